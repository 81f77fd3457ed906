"""Dashboard sessions: a token given once at login, then a random cookie and a CSRF token."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "corral_session"
LOGIN_COOKIE = "corral_login"  # the login form's own CSRF value (there is no session yet)
IDLE_SECONDS = 12 * 3600.0
MAX_SESSIONS = 10_000


@dataclass
class Session:
    """One browser's login. The token's secret stays on the server, so every request is
    authenticated again through the coordinator and a revoked token ends the session."""

    secret: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_used: float = field(default_factory=time.monotonic)


class Sessions:
    """Sessions in this coordinator's memory: random ids, nothing to forge or decrypt."""

    def __init__(self, idle: float = IDLE_SECONDS) -> None:
        self.idle = idle
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def create(self, secret: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(secret)
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:
                self._expire(time.monotonic())
            if len(self._by_id) >= MAX_SESSIONS:
                # still full: the least recently used session goes
                oldest = min(self._by_id, key=lambda k: self._by_id[k].last_used)
                del self._by_id[oldest]
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if now - session.last_used > self.idle:
                del self._by_id[sid]
                return None
            session.last_used = now
            return session

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def _expire(self, now: float) -> None:
        for sid in [k for k, s in self._by_id.items() if now - s.last_used > self.idle]:
            del self._by_id[sid]


def same(expected: str, given: str | None) -> bool:
    """A constant-time comparison of CSRF values; an empty expectation never matches."""
    return bool(expected) and given is not None and hmac.compare_digest(expected, given)
