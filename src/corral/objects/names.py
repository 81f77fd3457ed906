"""Names of objects and the paths jobs give them: strict, so no name can escape a directory."""

from __future__ import annotations

import re

from corral.errors import InvalidInput

SHA256_RE = re.compile(r"[0-9a-f]{64}")
PREFIX = "sha256:"
# within the `attempt_outputs.name` column, and below every common filesystem's path limit
MAX_NAME = 1024
MAX_PART = 255


def parse_sha256(value: str, field: str = "sha256") -> str:
    """The 64 lowercase hex digits of a sha256, with or without a `sha256:` prefix."""
    digest = value[len(PREFIX) :] if value.startswith(PREFIX) else value
    if not SHA256_RE.fullmatch(digest):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidInput(f"expected a sha256 (64 lowercase hex digits), got {shown!r}", field)
    return digest


def check_name(name: str, field: str = "name") -> str:
    """A relative path of plain parts: no `/` in front, no `.` or `..`, no empty parts,
    no backslash, no NUL or other control characters, and a bounded length."""
    if not name:
        raise InvalidInput("a name may not be empty", field)
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        raise InvalidInput(f"a name may be at most {MAX_NAME} bytes long", field)
    bad = next((c for c in name if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise InvalidInput(f"a name may not contain control characters (found {bad!r})", field)
    if "\\" in name:
        raise InvalidInput(f"a name may not contain a backslash: {name!r}", field)
    if name.startswith("/"):
        raise InvalidInput(f"a name must be a relative path, not {name!r}", field)
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise InvalidInput(f"a name may not have empty, '.' or '..' parts: {name!r}", field)
        if len(part.encode("utf-8", "surrogatepass")) > MAX_PART:
            raise InvalidInput(f"each part of a name may be at most {MAX_PART} bytes long", field)
    return name
