"""Resource limits as people write them in run specs: `{ cpu = "10s", memory = "512MiB", … }`."""

from __future__ import annotations

import re
from collections.abc import Mapping

from corral.domain.durations import parse_duration

LIMIT_KEYS = ("cpu", "memory", "procs", "fsize", "nofile")
SIZE_KEYS = ("memory", "fsize")
COUNT_KEYS = ("procs", "nofile")
MAX_COUNT = 1_000_000
MAX_SIZE = 1 << 50  # a petabyte: more is a typo

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|K|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


def parse_size(value: object) -> int:
    """Bytes from "512MiB", "1GiB", "64k" or a plain number of bytes; ValueError for people."""
    expected = 'expected a size like "512MiB"'
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        m = _SIZE.fullmatch(value.strip())
        if m is None:
            raise ValueError(f"{expected}, got {value!r}")
        size = int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
    else:
        raise ValueError(f"{expected}, not {type(value).__name__}")
    if not 0 < size <= MAX_SIZE:
        raise ValueError(f"{expected}: more than 0 bytes and at most 1 PiB, got {value!r}")
    return size


def parse_limits(raw: object) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """The limits and the problems, each problem as (key, message) under `limits`."""
    if not isinstance(raw, Mapping):
        return {}, [("", 'expected a table like { cpu = "10s", memory = "512MiB" }')]
    limits: dict[str, float] = {}
    problems: list[tuple[str, str]] = []
    for key, value in raw.items():
        if key not in LIMIT_KEYS:
            problems.append((str(key), f"unknown limit (expected one of {', '.join(LIMIT_KEYS)})"))
        elif key == "cpu":
            try:
                limits[key] = parse_duration(value)
            except ValueError as exc:
                problems.append((key, str(exc)))
        elif key in SIZE_KEYS:
            try:
                limits[key] = parse_size(value)
            except ValueError as exc:
                problems.append((key, str(exc)))
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
            problems.append((key, f"expected a whole number from 1 to {MAX_COUNT}, got {value!r}"))
        else:
            limits[key] = value
    return limits, problems


def format_size(n: float) -> str:
    """1 GiB, 512 MiB, 64 KiB, 100 bytes: exact where the size is a whole number of a unit."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{int(n)} bytes"
