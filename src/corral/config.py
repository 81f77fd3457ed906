"""Settings, read once at the edge: defaults < corral.toml < CORRAL_* variables < flags."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from corral.domain.durations import parse_duration
from corral.errors import ConfigError
from corral.objects.backend import url_problems

DEFAULT_SERVER = "http://127.0.0.1:8765"
TOKEN_FILE = "token"


def corral_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("CORRAL_HOME") or Path.home() / ".corral").expanduser()


@dataclass(frozen=True)
class Settings:
    """Everything `corral serve` needs; passed down, never global."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 8765
    db: str = ""  # "" = SQLite file under home
    local_slots: int = -1  # -1 = the CPU count; 0 = no local worker
    local_labels: tuple[str, ...] = ()
    lease_ttl: float = 30.0  # seconds a lease lives without a heartbeat
    sweep_interval: float = 1.0
    offline_after: float = 60.0  # a worker unseen this long shows as offline
    long_poll: float = 25.0  # how long a lease or wait request may hang
    retry_backoff: float = 1.0
    max_body: int = 8 * 1024 * 1024
    log_limit: int = 16 * 1024 * 1024  # bytes of log kept per attempt by the local worker
    tls_cert: str = ""
    tls_key: str = ""
    demo: bool = False
    log_level: str = "info"
    tasks: tuple[str, ...] = ()  # directories of task files (`@corral.task`)
    objects: str = ""  # "" = the directory `objects` under home; or a path, or s3://bucket[/prefix]
    max_object_size: int = 5 * 1024**3
    s3_endpoint: str = ""  # "" = AWS; e.g. http://127.0.0.1:8333 for SeaweedFS or MinIO
    s3_access_key: str = ""  # "" = boto3's own search (AWS_* variables, ~/.aws)
    s3_secret_key: str = field(default="", repr=False)
    s3_region: str = ""
    ssh_config: str = ""  # an ssh_config file for the fleet's connections ("" = the user's own)

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{(self.home / 'corral.db').absolute()}"

    @property
    def token_file(self) -> Path:
        return self.home / TOKEN_FILE

    @property
    def slots(self) -> int:
        return (os.cpu_count() or 1) if self.local_slots < 0 else self.local_slots


_DURATIONS = {"lease_ttl", "sweep_interval", "offline_after", "long_poll", "retry_backoff"}
_SIZES = {"max_body", "max_object_size", "log_limit"}  # "16MiB", "5GiB" or a number of bytes


def load(
    flags: Mapping[str, Any],
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers and report every problem at once, naming where it came from."""
    env = os.environ if env is None else env
    home = Path(flags.get("home") or corral_home(env)).expanduser()
    problems: list[str] = []
    known = {f.name: f for f in fields(Settings) if f.name != "home"}
    raw: dict[str, tuple[Any, str]] = {}

    path = Path(config_file) if config_file else home / "corral.toml"
    if config_file and not path.exists():
        problems.append(f"{path}: no such file")
    elif path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            problems.append(f"{path}: {exc}")
            data = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name in ("hosts", "roles", "secrets"):
                continue  # sections read by the parts they belong to
            if name not in known:
                problems.append(f"{path}: unknown setting {key!r}")
            else:
                raw[name] = (value, f"{path}: {key}")
    for name in known:
        var = f"CORRAL_{name.upper()}"
        if var in env:
            raw[name] = (env[var], var)
    for name, value in flags.items():
        if name in known and value is not None:
            raw[name] = (value, f"--{name.replace('_', '-')}")

    values: dict[str, Any] = {}
    for name, (value, origin) in raw.items():
        try:
            values[name] = _coerce(name, value, known[name].type)
        except ValueError as exc:
            problems.append(f"{origin}: {exc}")
    settings = replace(Settings(home=home), **values)
    if not 0 < settings.port < 65536:
        problems.append(f"port: {settings.port} is not a TCP port")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        problems.append("tls: give both --tls-cert and --tls-key, or neither")
    for name in ("tls_cert", "tls_key"):
        value = getattr(settings, name)
        if value and not Path(value).is_file():
            problems.append(f"{name.replace('_', '-')}: no such file {value}")
    for d in settings.tasks:
        if not Path(d).expanduser().is_dir():
            problems.append(f"tasks: no such directory {d}")
    problems.extend(url_problems(settings.objects))
    if settings.max_object_size <= 0:
        problems.append(f"max_object_size: {settings.max_object_size} is not a size in bytes")
    if problems:
        raise ConfigError(problems)
    return settings


def _coerce(name: str, value: Any, kind: object) -> Any:
    if name in _DURATIONS:
        return parse_duration(value)
    if name in _SIZES:
        from corral.domain.limits import parse_size

        return parse_size(value)
    if kind in ("int", int):
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, got {value!r}") from None
    if kind in ("bool", bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if kind in ("tuple[str, ...]",):
        if isinstance(value, str):
            return tuple(v for v in value.split(",") if v)
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError("expected a list of strings")
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value
