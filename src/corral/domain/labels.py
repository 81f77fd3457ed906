"""Labels describe workers; selectors say which labels a job needs. Matching is plain equality."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
VALUE_RE = re.compile(r"^[A-Za-z0-9_.:/+@-]{1,128}$")

Labels = Mapping[str, str]


class LabelError(ValueError):
    """A label or selector that does not follow the `key=value` rules."""


def check_pair(key: object, value: object, many: bool = False) -> tuple[str, str]:
    """One label; with `many`, a worker's value may list several, comma-separated (roles)."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise LabelError(
            f"label key {key!r} must start with a letter and hold only letters, digits, '_', '.', '-'"
        )
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise LabelError(
            f'label {key} must have a string value like "linux", not {type(value).__name__}'
        )
    text = str(value)
    if not all(VALUE_RE.match(v) for v in (text.split(",") if many else [text])):
        raise LabelError(
            f"label value {text!r} for {key} may hold only letters, digits and _ . : / + @ -"
        )
    return key, text


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """`["platform=linux", "arch=x86_64"]` or `["platform=linux,arch=x86_64"]` → a dict."""
    labels: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise LabelError(f"expected key=value, got {part!r}")
            k, v = check_pair(key.strip(), value.strip())
            labels[k] = v
    return labels


def check_labels(raw: object, many: bool = False) -> dict[str, str]:
    """A mapping from JSON/TOML checked pair by pair."""
    if not isinstance(raw, Mapping):
        raise LabelError(f'expected a table of key = "value", not {type(raw).__name__}')
    return dict(check_pair(k, v, many) for k, v in raw.items())


def matches(selector: Labels, labels: Labels) -> bool:
    """A worker matches when it has every label the selector names, with the same value (or,
    for a many-valued label like `role=app,db`, among its values)."""
    return all(v in labels.get(k, "").split(",") for k, v in selector.items())


def pairs(labels: Labels) -> list[str]:
    """`key=value` strings: the form the store keeps and matches in SQL (one per value)."""
    return [f"{k}={v}" for k, many in sorted(labels.items()) for v in many.split(",")]


def render(labels: Labels) -> str:
    return ",".join(pairs(labels)) or "-"
