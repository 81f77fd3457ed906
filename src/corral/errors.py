"""The one error tree of corral: callers act on the class, people read the message.

CorralError
├── InvalidInput          bad input: names the field path (422, or 400 for bodies)
│   ├── InvalidRunSpec    a run spec that does not parse or validate
│   └── HashMismatch      uploaded bytes whose sha256 is not the one named (400)
├── NotFound              no such run, job, worker, token or project (404)
├── Unauthorized          missing or unknown token (401)
├── Forbidden             the token may not do this (403)
├── Conflict              the request fights the current state (409)
│   └── LeaseLost         a lease token that is not the current one (409)
├── MapFailed             some items of `Client.map` failed (client side; carries the rest)
├── PayloadTooLarge       a body over the configured cap (413)
├── RangeNotSatisfiable   a byte range past the end of an object (416)
└── ConfigError           configuration problems, all of them at once
"""

from __future__ import annotations

from collections.abc import Sequence


class CorralError(Exception):
    """Root of every error corral raises on purpose."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(CorralError):
    """Input that is malformed or breaks a rule; `field` is a dotted path when known."""

    status = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.detail = message


class InvalidRunSpec(InvalidInput):
    """A run spec that does not validate; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        first_field, first_msg = self.problems[0]
        super().__init__(first_msg, first_field or None)
        if len(self.problems) > 1:
            self.message = "; ".join(f"{f}: {m}" if f else m for f, m in self.problems)
            self.args = (self.message,)


class HashMismatch(InvalidInput):
    """The bytes uploaded under a sha256 hash to another one; nothing was stored."""

    status = 400

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"the body hashes to sha256:{actual}, not to sha256:{expected} named in the path",
            "sha256",
        )
        self.expected = expected
        self.actual = actual


class NotFound(CorralError):
    status = 404


class Unauthorized(CorralError):
    status = 401


class Forbidden(CorralError):
    status = 403


class Conflict(CorralError):
    status = 409


class LeaseLost(Conflict):
    """The caller's lease token is not the job's current one: it may not heartbeat, log or finish."""


class PayloadTooLarge(CorralError):
    status = 413


class RangeNotSatisfiable(CorralError):
    """A byte range no part of the object meets; `size` is the object's, for Content-Range."""

    status = 416

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class ConfigError(CorralError):
    """Every configuration problem found, reported together."""

    status = 500

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


class MapFailed(CorralError):
    """Some items of a `Client.map` failed. `failures` lists (index, item, reason) for each;
    `results` holds every item's result in order (None where it failed)."""

    def __init__(
        self, run_id: int, failures: Sequence[tuple[int, object, str]], results: Sequence[object]
    ) -> None:
        shown = "; ".join(f"item {i} ({item!r:.60}): {why}" for i, item, why in failures[:20])
        more = f"; and {len(failures) - 20} more" if len(failures) > 20 else ""
        super().__init__(
            f"run {run_id}: {len(failures)} of {len(results)} items failed: {shown}{more}"
        )
        self.run_id = run_id
        self.failures = list(failures)
        self.results = list(results)
