"""Wake-ups inside one coordinator: a topic's version goes up, and whoever waits on it wakes.

Waiting is version-based (read the version, act, then wait for a newer one), so a
notification between acting and waiting is never lost. Works for threads and asyncio alike.

Every run and attempt has topics of its own, so the versions of topics nobody waits on are
forgotten now and then (a server that ran a million jobs would otherwise keep millions). A
forgotten topic reads as the hub's floor, which is above every version it forgot: whoever read
a version before it was forgotten wakes at once (and looks again), never later than it should.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

QUEUE = "queue"  # jobs became leasable
WORKERS = "workers"

#: topics remembered before those nobody waits on are forgotten
FORGET_ABOVE = 20_000


def run_topic(run_id: int) -> str:
    return f"run:{run_id}"


def run_end_topic(run_id: int) -> str:
    """Told only when a run may have ended: waiters for the end sleep through its progress."""
    return f"run-end:{run_id}"


def attempt_topic(attempt_id: int) -> str:
    return f"attempt:{attempt_id}"


class _Waiters:
    """The threads waiting on one topic: a notice wakes these and no others."""

    __slots__ = ("cond", "count")

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)
        self.count = 0


class Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # by topic: with one condition for all, every run's progress woke every leaser
        self._waiters: dict[str, _Waiters] = {}
        self._versions: dict[str, int] = {}
        self._floor = 0  # the version of every topic not in `_versions`
        self._forgotten = 0  # how many times topics were forgotten
        self._forget_at = FORGET_ABOVE  # twice what was kept the last time, at least
        self._async: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        self._listeners: list[Callable[[str], None]] = []

    def listen(self, callback: Callable[[str], None]) -> None:
        """Call `callback(topic)` on every notification (metrics, other coordinators)."""
        self._listeners.append(callback)

    def version(self, topic: str) -> int:
        with self._lock:
            return self._versions.get(topic, self._floor)

    def mark(self) -> int:
        """A mark for `told_since`, taken before the topic it asks about exists."""
        with self._lock:
            return self._forgotten

    def told_since(self, topic: str, mark: int) -> bool:
        """Whether `topic` may have been told since `mark` was taken: a topic told at least
        once is remembered until topics are forgotten, and a forgetting counts as told."""
        with self._lock:
            return topic in self._versions or self._forgotten != mark

    def watched(self, topic: str) -> bool:
        """Whether anyone in this process waits on `topic` now."""
        with self._lock:
            return topic in self._waiters or topic in self._async

    def notify(self, *topics: str, forward: bool = True) -> None:
        with self._lock:
            for topic in topics:
                self._versions[topic] = self._versions.get(topic, self._floor) + 1
                for loop, fut in self._async.pop(topic, []):
                    loop.call_soon_threadsafe(_resolve, fut)
                waiting = self._waiters.get(topic)
                if waiting is not None:
                    waiting.cond.notify_all()
            if len(self._versions) > self._forget_at:
                self._forget_locked()
        if forward:
            for callback in self._listeners:
                for topic in topics:
                    callback(topic)

    def wait(self, topic: str, since: int, timeout: float) -> bool:
        """Block until `topic` moves past `since` (True) or `timeout` passes (False)."""
        with self._lock:
            waiting = self._waiters.get(topic)
            if waiting is None:
                waiting = self._waiters[topic] = _Waiters(self._lock)
            waiting.count += 1
            try:
                return waiting.cond.wait_for(
                    lambda: self._versions.get(topic, self._floor) > since, timeout
                )
            finally:
                waiting.count -= 1
                if waiting.count == 0:
                    del self._waiters[topic]

    async def wait_async(self, topic: str, since: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._versions.get(topic, self._floor) > since:
                return True
            fut: asyncio.Future[None] = loop.create_future()
            self._async.setdefault(topic, []).append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            with self._lock:
                waiters = self._async.get(topic, [])
                if (loop, fut) in waiters:
                    waiters.remove((loop, fut))
                if not waiters:
                    self._async.pop(topic, None)
            return self.version(topic) > since

    def _forget_locked(self) -> None:
        """Forget the topics nobody waits on now, except the few fixed ones (no `:`)."""
        keep = {
            t: v
            for t, v in self._versions.items()
            if ":" not in t or t in self._waiters or t in self._async
        }
        self._floor = max(self._floor, *self._versions.values()) + 1
        self._versions = keep
        self._forgotten += 1
        # many waiters at once: not a scan of them all on every notice
        self._forget_at = max(FORGET_ABOVE, 2 * len(keep))


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
