"""The small interface every system adapter implements.

A *handle* is whatever ``submit_one``/``batch`` return (a result object, a job
id, ...); only the adapter looks inside. ``kind`` is ``"noop"`` (``noop(x) ->
x``) or ``"shell"`` (``shell_true(x)``, runs ``true``).

All waits take a ``deadline`` (``time.monotonic()`` value) and must raise
``TimeoutError`` when it passes: nothing may block forever.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import procs


class System:
    name = "?"
    #: whether the system has a batch-submission API (W1 batch, W3)
    has_batch = False

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[procs.ManagedProc] = []

    # -- description ------------------------------------------------------
    def version(self) -> str:
        return "?"

    def describe(self) -> str:
        """How it runs here (one line for the report)."""
        return ""

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every process this adapter started (graceful, then kill)."""
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def spawn(self, name: str, argv: list[str], **kw: Any) -> procs.ManagedProc:
        p = procs.spawn(name, argv, self.workdir / "logs", **kw)
        self.procs.append(p)
        return p

    def check_alive(self) -> None:
        for p in self.procs:
            p.check_alive()

    # -- work -------------------------------------------------------------
    def submit_one(self, i: int, kind: str) -> Any:
        raise NotImplementedError

    def batch(self, kind: str, n: int) -> list[Any]:
        """Submit ``n`` tasks ``0..n-1`` through the batch API; return their handles."""
        raise NotImplementedError

    def wait(self, handles: list[Any], deadline: float) -> None:
        """Block until every handle has finished successfully (raise otherwise)."""
        for h in handles:
            self.wait_one(h, deadline)

    def wait_one(self, handle: Any, deadline: float) -> None:
        raise NotImplementedError

    def call_one(self, i: int, kind: str, deadline: float) -> None:
        """Submit one task and block until it has returned its result (W2): the system's
        own way of calling a task and waiting for it, submit then wait unless it has one."""
        self.wait_one(self.submit_one(i, kind), deadline)

    def warm_up(self, n: int = 10) -> None:
        deadline = time.monotonic() + 60
        self.wait([self.submit_one(i, "noop") for i in range(n)], deadline)

    # -- what it costs ----------------------------------------------------
    def cpu_roots(self) -> list[int]:
        """PIDs whose whole process trees are the system (server, workers)."""
        return [p.pid for p in self.procs]

    def cpu_externals(self) -> list[int]:
        """Single processes of shared services that work for the system (Redis, PG backends)."""
        return []

    def rss_mb(self) -> dict[str, float | None]:
        """Peak RSS in MB of the server and of the largest single worker process."""
        return {"server": None, "worker": None}


def remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def check_value(got: Any, want: int, what: str) -> None:
    if got != want:
        raise RuntimeError(f"{what}: result {got!r}, expected {want!r}")
