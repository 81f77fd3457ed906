"""A run's limits on both engines: max_parallel in the lease pick (concurrent leasers too) and
max_failures stopping the rest of a run, like a rolling deploy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from integration_helpers import join, report, spec, states
from test_concurrency import run_threads

from corral.api.schemas import run_json
from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Lease, Worker
from corral.domain.states import RunState
from corral.errors import InvalidRunSpec
from corral.secrets import Secrets
from corral.store import Store


def lease_all(coord: Coordinator, w: Worker, n: int = 10) -> list[Lease]:
    coord._found_empty.clear()  # ask the store every time, not the "came back short" memory
    return coord.lease(w.id, n)


def reasons(coord: Coordinator, run_id: int) -> dict[str, str]:
    return {j.label: j.reason for j in coord.store.runs.jobs(run_id)}


def test_max_parallel_caps_the_jobs_live_at_once(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1", slots=10)
    run = coord.submit(
        admin, spec({f"j{i}": {"command": "true"} for i in range(6)}, max_parallel=2)
    )
    assert run_json(coord.store.runs.get(run.id))["max_parallel"] == 2
    first = lease_all(coord, w)
    assert [x.job_name for x in first] == ["j0", "j1"]
    assert lease_all(coord, w) == []  # the run is at its limit
    coord.finish(w.id, [report(first[0])])
    second = lease_all(coord, w)
    assert [x.job_name for x in second] == ["j2"]
    coord.finish(w.id, [report(x) for x in [first[1], *second]])
    rest = lease_all(coord, w)
    assert [x.job_name for x in rest] == ["j3", "j4"]
    coord.finish(w.id, [report(x) for x in rest])
    coord.finish(w.id, [report(x) for x in lease_all(coord, w)])
    assert coord.store.runs.get(run.id).state is RunState.PASSED


def test_a_run_at_its_limit_does_not_hold_up_other_runs(
    coord: Coordinator, admin: Principal
) -> None:
    w = join(coord, admin, "w1", slots=10)
    coord.submit(
        admin, spec({f"a{i}": {"command": "true"} for i in range(20)}, name="a", max_parallel=1)
    )
    coord.submit(admin, spec({f"b{i}": {"command": "true"} for i in range(3)}, name="b"))
    got = [x.job_name for x in lease_all(coord, w)]
    got += [x.job_name for x in lease_all(coord, w)]
    assert sorted(got) == ["a0", "b0", "b1", "b2"]


def test_an_end_in_a_limited_run_wakes_the_queue(coord: Coordinator, admin: Principal) -> None:
    from corral import events

    w = join(coord, admin, "w1", slots=10)
    coord.submit(admin, spec({f"j{i}": {"command": "true"} for i in range(3)}, max_parallel=1))
    held = lease_all(coord, w)
    version = coord.hub.version(events.QUEUE)
    coord.finish(w.id, [report(x) for x in held])
    assert coord.hub.version(events.QUEUE) > version  # a waiting worker asks again


def test_concurrent_leasers_never_exceed_max_parallel(
    coord: Coordinator, admin: Principal, open_store: Callable[..., Store]
) -> None:
    # two coordinators (their own engines and pools) on one store, two workers each
    other = Coordinator(open_store(), lease_ttl=30.0)
    coords = [coord, coord, other, other]
    workers = [join(coord, admin, f"w{i}", slots=4) for i in range(4)]
    jobs = 40
    run = coord.submit(
        admin, spec({f"j{i}": {"command": "true"} for i in range(jobs)}, max_parallel=2)
    )
    lock = threading.Lock()
    live = 0
    most = 0
    leased: list[int] = []
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        nonlocal live, most
        c, w = coords[i], workers[i]
        barrier.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            c._found_empty.clear()
            batch = c.lease(w.id, 4)
            if not batch:
                if coord.store.runs.state(run.id).ended:
                    return
                time.sleep(0.002)
                continue
            with lock:
                live += len(batch)  # leased, so live in the store until finished below
                most = max(most, live)
                leased.extend(x.job_id for x in batch)
            time.sleep(0.005)
            with lock:
                live -= len(batch)  # before the finish: never counts a job that ended
            c.finish(w.id, [report(x) for x in batch])

    run_threads(work, 4)
    assert most <= 2
    assert sorted(leased) == sorted(j.id for j in coord.store.runs.jobs(run.id))
    assert coord.store.runs.get(run.id).state is RunState.PASSED


def test_max_failures_cancels_the_waiting_jobs_and_fails_the_run(
    coord: Coordinator, admin: Principal
) -> None:
    w = join(coord, admin, "w1", slots=10)
    jobs = {f"web{i}": {"command": "./deploy.sh"} for i in range(1, 6)}
    jobs["notify"] = {"command": "true", "needs": ["web1"]}
    run = coord.submit(admin, spec(jobs, max_parallel=2, max_failures=1))
    assert run_json(coord.store.runs.get(run.id))["max_failures"] == 1
    web1, web2 = lease_all(coord, w)
    coord.finish(w.id, [report(web2, "failed", 1)])
    after = states(coord, run.id)
    assert after == {
        "web1": "leased",  # already out: it finishes
        "web2": "failed",
        "web3": "canceled",
        "web4": "canceled",
        "web5": "canceled",
        "notify": "canceled",
    }
    why = reasons(coord, run.id)
    for name in ("web3", "web4", "web5", "notify"):
        assert why[name] == "stopped: max_failures 1 reached (web2 failed)"
    assert lease_all(coord, w) == []
    coord.finish(w.id, [report(web1)])
    assert coord.store.runs.get(run.id).state is RunState.FAILED
    # a rerun of the failed and canceled jobs starts afresh: no failures count any more
    coord.rerun(admin, str(run.id), failed_only=True)
    assert {x.job_name for x in lease_all(coord, w)} == {"web2", "web3"}


def test_max_failures_counts_time_outs_and_waits_for_the_limit(
    coord: Coordinator, admin: Principal
) -> None:
    run = coord.submit(
        admin,
        spec(
            {f"j{i}": {"command": "true", "on": {"step": str(i)}} for i in range(4)},
            max_failures=2,
        ),
    )
    s0 = join(coord, admin, "s0", slots=1, step="0")
    first = lease_all(coord, s0)
    assert [x.job_name for x in first] == ["j0"]
    coord.finish(s0.id, [report(first[0], "timed_out", None)])
    assert states(coord, run.id)["j1"] == "queued"  # one failure of two: carry on
    s1 = join(coord, admin, "s1", slots=1, step="1")
    second = lease_all(coord, s1)
    coord.finish(s1.id, [report(second[0], "failed", 3)])
    assert reasons(coord, run.id)["j2"] == "stopped: max_failures 2 reached (j1 failed)"
    assert states(coord, run.id)["j3"] == "canceled"
    assert coord.store.runs.get(run.id).state is RunState.FAILED


def test_a_retry_after_the_stop_does_not_start(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1", slots=10)
    run = coord.submit(
        admin,
        spec({"x": {"command": "flaky", "retries": 2}, "y": {"command": "false"}}, max_failures=1),
    )
    held = {x.job_name: x for x in lease_all(coord, w)}
    coord.finish(w.id, [report(held["y"], "failed", 1)])
    assert states(coord, run.id)["x"] == "leased"
    coord.finish(w.id, [report(held["x"], "failed", 1)])  # retries left, but the run stopped
    assert states(coord, run.id)["x"] == "canceled"
    assert reasons(coord, run.id)["x"] == "stopped: max_failures 1 reached (y failed)"
    assert lease_all(coord, w) == []
    assert coord.store.runs.get(run.id).state is RunState.FAILED


def test_sudo_names_a_secret_the_server_holds(store: Store) -> None:
    coord = Coordinator(store, secrets=Secrets({"SUDO_PW": "pw-4-sudo", "API": "a"}))
    _, token = store.tokens.create("admin", "test-admin")
    root = coord.authenticate(token)
    with pytest.raises(InvalidRunSpec) as info:
        coord.submit(root, spec({"a": {"command": "sudo true", "sudo": "NOPE"}}))
    assert info.value.problems == [("jobs.a.sudo", "unknown secret 'NOPE'")]
    coord.submit(root, spec({"a": {"command": "sudo true", "sudo": "SUDO_PW", "secrets": ["API"]}}))
    (lease,) = coord.lease(join(coord, root, "w1").id, 10)
    assert lease.payload["sudo"] == "SUDO_PW"
    assert lease.payload["secrets"] == ["API"]  # the job's env gets API only
    assert lease.payload["secret_values"] == {"API": "a", "SUDO_PW": "pw-4-sudo"}
    # the stored payload names the secret, never its value
    stored = coord.store.runs.job_by_id(lease.job_id).payload
    assert "pw-4-sudo" not in repr(stored)
