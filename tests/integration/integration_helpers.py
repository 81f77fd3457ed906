"""Plain helpers the integration tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Lease, Report, Worker
from corral.domain.runspec import RunSpec, parse
from corral.store import Store


def spec(jobs: dict[str, dict[str, Any]], **run: Any) -> RunSpec:
    return parse({"name": run.pop("name", "r"), **run, "jobs": jobs})


def join(
    coord: Coordinator,
    who: Principal,
    name: str,
    allow: tuple[str, ...] = ("command",),
    slots: int = 4,
    **labels: str,
) -> Worker:
    worker, _ = coord.join(who, name, labels, slots, list(allow))
    return worker


def report(lease: Lease, outcome: str = "passed", exit_code: int | None = 0) -> Report:
    return Report(lease.attempt_id, lease.token, outcome, exit_code, f"exit {exit_code}")


def states(coord: Coordinator, run_id: int) -> dict[str, str]:
    """Job label → state, for a whole run."""
    return {j.label: j.state.value for j in coord.store.runs.jobs(run_id)}


def snapshot(store: Store, job_id: int) -> tuple[Any, ...]:
    """Everything the store holds about a job: its row and its attempts (to prove no change)."""
    return (store.runs.job_by_id(job_id), tuple(store.runs.attempts(job_id)))


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for `check()` to hold, looking every 10 ms; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
