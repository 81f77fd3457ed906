"""Placement: what a run's jobs become (fanout copies), and why a job is still waiting."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from corral.domain.models import Job, Worker
from corral.domain.runspec import parse
from corral.domain.states import JobState
from corral.errors import InvalidRunSpec
from corral.scheduler.placement import eligible, expand, why_waiting

NOW = 1_000_000.0
OFFLINE_AFTER = 60.0


def worker(
    id: int,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    slots: int = 2,
    allow: tuple[str, ...] = ("command",),
    draining: bool = False,
    last_seen: float = NOW,
    busy: int = 0,
) -> Worker:
    return Worker(
        id=id,
        name=name,
        labels=labels or {},
        slots=slots,
        allow=allow,
        draining=draining,
        last_seen=last_seen,
        joined_at=NOW - 100,
        busy=busy,
    )


def job(name: str = "build", **fields: Any) -> Job:
    base = Job(
        id=1,
        run_id=1,
        name=name,
        instance="",
        kind="command",
        payload={"kind": "command", "command": "make"},
        selector={},
        needs=(),
        when="success",
        timeout=None,
        retries=0,
        state=JobState.QUEUED,
        attempts=0,
        reason="",
        exit_code=None,
        worker=None,
        not_before=0.0,
        created_at=NOW - 10,
        started_at=None,
        ended_at=None,
    )
    return replace(base, **fields)


FLEET = [
    worker(1, "web2", labels={"role": "app", "platform": "linux"}),
    worker(2, "web1", labels={"role": "app", "platform": "linux"}),
    worker(3, "db1", labels={"role": "db", "platform": "linux"}),
    worker(4, "web3", labels={"role": "app"}, allow=("task",)),
    worker(5, "mac1", labels={"platform": "macos", "role": "app"}, allow=("command", "task")),
]


# -- expand ----------------------------------------------------------------------------------


def test_fanout_one_is_one_row_whatever_the_workers() -> None:
    spec = parse({"jobs": {"build": {"command": "make", "on": {"platform": "linux"}}}})
    (p,) = expand(spec, FLEET)
    assert (p.spec.name, p.instance, p.worker_id, p.position) == ("build", "", None, 0)
    assert len(expand(spec, [])) == 1  # no worker needed to queue it


def test_fanout_each_makes_one_copy_per_matching_worker() -> None:
    spec = parse(
        {
            "jobs": {
                "deploy": {"command": "./deploy.sh", "on": {"role": "app"}, "fanout": "each"},
                "after": {"command": "x", "needs": ["deploy"]},
            }
        }
    )
    rows = expand(spec, FLEET)
    deploys = [p for p in rows if p.spec.name == "deploy"]
    # web3 allows only tasks; db1 has the wrong role; sorted by worker name
    assert [(p.instance, p.worker_id) for p in deploys] == [("mac1", 5), ("web1", 2), ("web2", 1)]
    assert all(p.position == 0 for p in deploys)
    (after,) = [p for p in rows if p.spec.name == "after"]
    assert (after.instance, after.worker_id, after.position, after.needs) == (
        "",
        None,
        1,
        ("deploy",),
    )


def test_fanout_each_with_no_matching_worker_names_the_job() -> None:
    spec = parse(
        {
            "jobs": {
                "ok": {"command": "x", "fanout": "each"},
                "deploy": {"command": "x", "on": {"role": "cache"}, "fanout": "each"},
                "tasky": {"task": "t", "on": {"role": "db"}, "fanout": "each"},
            }
        }
    )
    with pytest.raises(InvalidRunSpec) as info:
        expand(spec, FLEET)
    fields = [f for f, _ in info.value.problems]
    assert fields == ["jobs.deploy.fanout", "jobs.tasky.fanout"]
    _, message = info.value.problems[0]
    assert "role=cache" in message and "command" in message
    _, message = info.value.problems[1]
    assert "role=db" in message and "task" in message


def test_fanout_each_with_no_workers_at_all() -> None:
    spec = parse({"jobs": {"deploy": {"command": "x", "fanout": "each"}}})
    with pytest.raises(InvalidRunSpec, match=r"jobs\.deploy\.fanout"):
        expand(spec, [])


def test_expand_adds_sequential_needs() -> None:
    spec = parse({"schedule": "sequential", "jobs": {n: {"command": "x"} for n in ("a", "b", "c")}})
    assert [(p.spec.name, p.needs) for p in expand(spec, [])] == [
        ("a", ()),
        ("b", ("a",)),
        ("c", ("b",)),
    ]


def test_eligible() -> None:
    spec = parse({"jobs": {"t": {"task": "x", "on": {"role": "app"}}}}).job("t")
    assert [w.name for w in FLEET if eligible(spec, w)] == ["web3", "mac1"]


# -- why_waiting -----------------------------------------------------------------------------


def wait(j: Job, workers: list[Worker], others: list[Job] | None = None) -> str:
    return why_waiting(j, others or [], workers, NOW, OFFLINE_AFTER)


def test_waiting_on_needs() -> None:
    j = job("test", state=JobState.BLOCKED, needs=("build", "lint"))
    others = [
        job("build", id=2, state=JobState.RUNNING),
        job("lint", id=3, state=JobState.PASSED),
        job("deploy", id=4, state=JobState.QUEUED),
        job("build", id=5, instance="mac1", state=JobState.QUEUED),
    ]
    assert wait(j, [], others) == "waiting on needs: build (running), build[mac1] (queued)"
    assert wait(j, [], []) == "waiting on needs"


@pytest.mark.parametrize(
    "state",
    [s for s in JobState if s not in (JobState.BLOCKED, JobState.QUEUED)],
)
def test_nothing_to_say_unless_blocked_or_queued(state: JobState) -> None:
    assert wait(job(state=state), []) == ""


def test_retry_back_off() -> None:
    j = job(not_before=NOW + 30, reason="exit 1; retry 1 of 2 in 30s")
    assert wait(j, FLEET) == "retrying in 30s (exit 1; retry 1 of 2 in 30s)"
    assert wait(replace(j, reason=""), FLEET) == "retrying in 30s"


def test_no_matching_worker() -> None:
    j = job(selector={"platform": "windows"})
    assert wait(j, FLEET) == (
        "no registered worker matches platform=windows and allows command jobs"
    )
    assert wait(job(), []) == "no registered worker matches any labels and allows command jobs"
    code = job(kind="code")
    assert wait(code, FLEET) == "no registered worker matches any labels and allows code jobs"


def test_a_fanout_copy_waits_for_its_own_worker() -> None:
    j = job("deploy", instance="web9")
    assert wait(j, FLEET) == "no registered worker matches worker web9 and allows command jobs"
    j = job("deploy", instance="web1")
    assert wait(j, FLEET) == "waiting for a matching worker to ask for work"


def test_every_matching_worker_offline() -> None:
    old = NOW - OFFLINE_AFTER - 1
    workers = [
        worker(1, "a", labels={"os": "linux"}, last_seen=old),
        worker(2, "b", labels={"os": "linux"}, last_seen=old),
        worker(3, "c", labels={"os": "bsd"}),
    ]
    assert wait(job(selector={"os": "linux"}), workers) == "every matching worker is offline (a, b)"


def test_every_matching_worker_draining() -> None:
    workers = [
        worker(1, "a", draining=True),
        worker(2, "b", draining=True),
        worker(3, "c", last_seen=NOW - OFFLINE_AFTER - 1),
    ]
    assert wait(job(), workers) == "every matching worker is draining (a, b)"


def test_all_busy() -> None:
    workers = [worker(1, "a", slots=2, busy=2), worker(2, "b", slots=1, busy=1)]
    assert wait(job(), workers) == "all 2 matching workers are busy (3 slots in use)"


def test_a_free_worker_will_ask() -> None:
    workers = [worker(1, "a", slots=2, busy=2), worker(2, "b", slots=2, busy=1)]
    assert wait(job(), workers) == "waiting for a matching worker to ask for work"
