"""Hide secret values in a job's output as it streams, even when split across chunks (stdlib only)."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
# Lines of a multi-line secret are hidden one by one too (a job may print it line by line, or
# with other line endings); lines shorter than this are too common to hide on their own.
MIN_LINE = 4


def _patterns(secrets: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for value in secrets:
        if not value:
            continue
        found.add(value)
        if "\n" in value or "\r" in value:
            found.update(
                line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_LINE
            )
    # longest first, so a secret that contains another is hidden whole
    return sorted(found, key=lambda v: (-len(v), v))


class Masker:
    """One stream's masker: `feed` returns what is safe to show now, `flush` the rest at its end.

    Text that could be the start of a secret is held back until the next chunk tells whether
    it is one; at most the length of the longest secret, minus one character, is ever held.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._values = _patterns(secrets)
        self._re = re.compile("|".join(map(re.escape, self._values))) if self._values else None
        self._longest = max((len(v) for v in self._values), default=0)
        self._pending = ""

    def __bool__(self) -> bool:
        return self._re is not None

    def mask(self, text: str) -> str:
        """A whole text at once (a reason, an error message): every secret hidden."""
        if self._re is None:
            return text
        return self._re.sub(MASK, text)

    def feed(self, text: str) -> str:
        if self._re is None:
            return text
        buf = self._pending + text
        out: list[str] = []
        pos = 0
        for m in self._re.finditer(buf):
            if self._longer_may_follow(buf, m.start()):
                # a longer secret may start here and end in a later chunk: decide then
                out.append(buf[pos : m.start()])
                self._pending = buf[m.start() :]
                return "".join(out)
            out.append(buf[pos : m.start()])
            out.append(MASK)
            pos = m.end()
        rest = buf[pos:]
        hold = self._held(rest)
        out.append(rest[: len(rest) - hold])
        self._pending = rest[len(rest) - hold :]
        return "".join(out)

    def flush(self) -> str:
        """The held-back tail at the end of the stream: nothing more can complete a secret."""
        rest, self._pending = self._pending, ""
        return self.mask(rest)

    def _longer_may_follow(self, buf: str, start: int) -> bool:
        tail = buf[start:]
        return any(len(v) > len(tail) and v.startswith(tail) for v in self._values)

    def _held(self, rest: str) -> int:
        """The length of the longest end of `rest` that begins some secret."""
        for k in range(min(len(rest), self._longest - 1), 0, -1):
            end = rest[-k:]
            if any(v.startswith(end) for v in self._values):
                return k
        return 0
