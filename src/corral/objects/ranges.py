"""HTTP byte ranges of an object (RFC 9110 §14): one range served, anything else read whole."""

from __future__ import annotations

import re

from corral.errors import RangeNotSatisfiable

_ONE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte positions the header asks for, or None for the whole
    object. A header that is malformed, of another unit, or asks for several ranges is ignored
    (the server may always answer in full); one that cannot be met raises RangeNotSatisfiable."""
    if not header:
        return None
    match = _ONE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # a suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(
                f"range {header!r} is empty for an object of {size} bytes", size
            )
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # invalid, so ignored
    if first >= size:
        raise RangeNotSatisfiable(
            f"range {header!r} starts past the end of an object of {size} bytes", size
        )
    return first, min(last, size - 1)
