"""The inventory: hosts by site name and role, read from `[hosts.*]` and `[roles.*]` of the config."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.domain.labels import VALUE_RE
from corral.domain.runspec import ENV_KEY_RE, NAME_RE
from corral.errors import ConfigError
from corral.worker.tracking import CONTAINMENTS

_HOST_KEYS = {"ssh", "roles", "port", "identity", "python", "vars", "containment"}
_ROLE_KEYS = {"vars", "containment"}
# a site is a worker: its name follows the worker-name rules (and is a valid label value)
SITE_RE = NAME_RE


@dataclass(frozen=True)
class Host:
    """One site: where to reach it over SSH, its roles, and its variables (role vars < host vars)."""

    site: str
    ssh: str  # "user@host" or "host"
    roles: tuple[str, ...] = ()
    port: int | None = None
    identity: str | None = None
    python: str = "python3"
    vars: Mapping[str, str] = field(default_factory=dict)
    # what ends its jobs' processes (worker/tracking.py): "process-group" for a host whose jobs
    # leave daemons running (setsid) that must outlive them, where it would follow them by cgroup
    containment: str = "auto"

    @property
    def labels(self) -> dict[str, str]:
        """The labels its worker carries: `site=NAME`, and `role=` every role (a many-valued label)."""
        out = {"site": self.site}
        if self.roles:
            out["role"] = ",".join(self.roles)
        return out


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...] = ()

    def host(self, site: str) -> Host:
        return next(h for h in self.hosts if h.site == site)

    def __bool__(self) -> bool:
        return bool(self.hosts)


def load_inventory(path: Path) -> Inventory:
    """Read the inventory from a config file; an absent file is an empty inventory."""
    if not path.exists():
        return Inventory()
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    return parse_inventory(data, str(path))


def parse_inventory(data: Mapping[str, Any], origin: str) -> Inventory:
    """Every problem of the `[hosts]` and `[roles]` tables at once, each naming file and key."""
    problems: list[str] = []

    def bad(key: str, message: str) -> None:
        problems.append(f"{origin}: {key}: {message}")

    raw_roles = data.get("roles", {})
    role_vars: dict[str, dict[str, str]] = {}
    role_containment: dict[str, str] = {}
    if not isinstance(raw_roles, Mapping):
        bad("roles", "expected a table of [roles.NAME] tables")
        raw_roles = {}
    for name, role in raw_roles.items():
        at = f"roles.{name}"
        if not VALUE_RE.match(name):
            bad(at, "a role name holds only letters, digits and _ . : / + @ -")
        if not isinstance(role, Mapping):
            bad(at, "expected a table")
            continue
        for key in sorted(set(role) - _ROLE_KEYS):
            bad(f"{at}.{key}", f"unknown key (expected one of {', '.join(sorted(_ROLE_KEYS))})")
        role_vars[name] = _vars(role.get("vars", {}), f"{at}.vars", bad)
        if "containment" in role:
            role_containment[name] = _containment(role["containment"], f"{at}.containment", bad)

    raw_hosts = data.get("hosts", {})
    if not isinstance(raw_hosts, Mapping):
        bad("hosts", "expected a table of [hosts.NAME] tables")
        raw_hosts = {}
    hosts: list[Host] = []
    for site, raw in raw_hosts.items():
        at = f"hosts.{site}"
        if not SITE_RE.match(site):
            bad(at, "a site name holds 1-64 letters, digits and _ . + -")
        if not isinstance(raw, Mapping):
            bad(at, "expected a table")
            continue
        for key in sorted(set(raw) - _HOST_KEYS):
            bad(f"{at}.{key}", f"unknown key (expected one of {', '.join(sorted(_HOST_KEYS))})")
        ssh = raw.get("ssh")
        if (
            not isinstance(ssh, str)
            or not ssh
            or ssh.startswith("-")
            or any(c.isspace() for c in ssh)
        ):
            bad(f"{at}.ssh", 'expected "user@host" or "host" (no spaces, not an option)')
            ssh = ""
        roles = raw.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            bad(f"{at}.roles", 'expected a list of role names like ["app"]')
            roles = []
        for role in roles:
            if not VALUE_RE.match(role) or "," in role:
                bad(f"{at}.roles", f"role {role!r} may hold only letters, digits and _ . : / + @ -")
        port = raw.get("port")
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            bad(f"{at}.port", f"expected a TCP port, got {port!r}")
            port = None
        identity = raw.get("identity")
        if identity is not None and (not isinstance(identity, str) or not identity):
            bad(f"{at}.identity", "expected the path of a private key file")
            identity = None
        elif identity is not None and not Path(identity).expanduser().is_file():
            # the path only, never the key's content
            bad(f"{at}.identity", f"no such file {identity}")
        python = raw.get("python", "python3")
        if not isinstance(python, str) or not python.strip():
            bad(f"{at}.python", "expected the remote Python command, like python3")
            python = "python3"
        if "containment" in raw:  # the host's own, over its roles'
            containment = _containment(raw["containment"], f"{at}.containment", bad)
        else:
            chosen = {role_containment[r] for r in roles if r in role_containment}
            if len(chosen) > 1:
                bad(
                    f"{at}.containment",
                    f"its roles choose {' and '.join(sorted(chosen))}: say which for the host",
                )
            containment = chosen.pop() if len(chosen) == 1 else "auto"
        merged: dict[str, str] = {}
        for role in roles:
            merged.update(role_vars.get(role, {}))
        merged.update(_vars(raw.get("vars", {}), f"{at}.vars", bad))
        hosts.append(
            Host(
                site=site,
                ssh=ssh,
                roles=tuple(dict.fromkeys(roles)),
                port=port,
                identity=str(Path(identity).expanduser()) if identity else None,
                python=python,
                vars=merged,
                containment=containment,
            )
        )
    if problems:
        raise ConfigError(problems)
    return Inventory(tuple(hosts))


def _containment(raw: object, at: str, bad: Any) -> str:
    if raw not in CONTAINMENTS:
        bad(at, f"expected one of {', '.join(CONTAINMENTS)}")
        return "auto"
    return str(raw)


def _vars(raw: object, at: str, bad: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        bad(at, 'expected a table of NAME = "value"')
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not ENV_KEY_RE.match(key):
            # vars reach jobs as environment variables
            bad(f"{at}.{key}", "a variable name holds letters, digits and _, not first a digit")
        elif isinstance(value, (dict, list)):
            bad(f"{at}.{key}", "expected a string, number or boolean")
        else:
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out
