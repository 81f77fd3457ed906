"""Names of objects and the paths jobs give them: strict, so no name can escape a directory.

The rules themselves live in the pure core (domain/dataflow.py), shared with run specs; here
they become errors for the API, the client and the CLI.
"""

from __future__ import annotations

from corral.domain import dataflow
from corral.errors import InvalidInput

PREFIX = "sha256:"
# within the `attempt_outputs.name` column, and below every common filesystem's path limit
MAX_NAME = dataflow.MAX_PATH
MAX_PART = dataflow.MAX_PART


def parse_sha256(value: str, field: str = "sha256") -> str:
    """The 64 lowercase hex digits of a sha256, with or without a `sha256:` prefix."""
    digest = dataflow.parse_sha256(value)
    if digest is None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidInput(f"expected a sha256 (64 lowercase hex digits), got {shown!r}", field)
    return digest


def check_name(name: str, field: str = "name") -> str:
    """A relative path of plain parts: no `/` in front, no `.` or `..`, no empty parts,
    no backslash, no NUL or other control characters, and a bounded length."""
    problem = dataflow.path_problem(name, glob=True)  # `data[1].csv` is a fine file name
    if problem is not None:
        raise InvalidInput(f"{problem}: {name[:80]!r}", field)
    return name
