"""Secrets the server holds for jobs: the `[secrets]` table of corral.toml and CORRAL_SECRET_* variables.

Values live in the server's memory only: never in the database, never in an API answer other
than the lease that hands a job to its worker.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from corral.errors import ConfigError

ENV_PREFIX = "CORRAL_SECRET_"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class Secrets:
    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __len__(self) -> int:
        return len(self._values)

    def names(self) -> list[str]:
        return sorted(self._values)

    def unknown(self, names: object) -> list[str]:
        return [n for n in _names(names) if n not in self._values]

    def resolve(self, names: object) -> dict[str, str]:
        """The values of the named secrets the server holds (a removed one is left out)."""
        return {n: self._values[n] for n in _names(names) if n in self._values}

    def __repr__(self) -> str:  # never the values, even in a traceback
        return f"Secrets({', '.join(self.names())})"


def _names(names: object) -> list[str]:
    if not isinstance(names, (list, tuple)):
        return []
    return [n for n in names if isinstance(n, str)]


def load_secrets(
    home: Path, config_file: str | None = None, env: Mapping[str, str] | None = None
) -> Secrets:
    """Secrets from the settings file's `[secrets]` table, overridden by CORRAL_SECRET_<NAME>."""
    env = os.environ if env is None else env
    path = Path(config_file) if config_file else home / "corral.toml"
    problems: list[str] = []
    values: dict[str, str] = {}
    if path.exists():
        try:
            table = tomllib.loads(path.read_text()).get("secrets", {})
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError([f"{path}: {exc}"]) from None
        if not isinstance(table, dict):
            problems.append(f'{path}: secrets: expected a table of NAME = "value"')
            table = {}
        for name, value in table.items():
            if not NAME_RE.match(name):
                problems.append(f"{path}: secrets.{name}: a name holds letters, digits and _")
            elif not isinstance(value, str) or not value:
                # the value itself is never echoed back
                problems.append(f"{path}: secrets.{name}: expected a non-empty string")
            else:
                values[name] = value
    for var, value in env.items():
        if var.startswith(ENV_PREFIX) and len(var) > len(ENV_PREFIX):
            name = var[len(ENV_PREFIX) :]
            if not NAME_RE.match(name):
                problems.append(f"{var}: a secret name holds letters, digits and _")
            elif value:
                values[name] = value
    if problems:
        raise ConfigError(problems)
    return Secrets(values)
