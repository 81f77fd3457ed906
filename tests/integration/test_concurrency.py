"""Concurrency on both engines: many workers and two coordinators never hand a job out twice,
and a finish racing the sweeper is recorded exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from integration_helpers import join, report, spec
from sqlalchemy import func, select

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.states import JobState, RunState
from corral.errors import LeaseLost
from corral.store import Store
from corral.store.leases import Ended
from corral.store.tables import attempts, runs

JOBS = 300
THREADS = 4
BATCH = 5


def run_threads(target: Callable[[int], None], n: int) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def test_concurrent_workers_never_lease_a_job_twice(
    coord: Coordinator, admin: Principal, open_store: Callable[..., Store]
) -> None:
    # two coordinators (separate engines and pools) on one database, two workers each
    other = Coordinator(open_store(), lease_ttl=30.0)
    coords = [coord, coord, other, other]
    workers = [join(coord, admin, f"w{i}", slots=BATCH) for i in range(THREADS)]
    run = coord.submit(admin, spec({f"j{i}": {"command": "true"} for i in range(JOBS)}))

    leased: list[list[int]] = [[] for _ in range(THREADS)]
    finished: list[list[Ended | LeaseLost]] = [[] for _ in range(THREADS)]
    barrier = threading.Barrier(THREADS)

    def work(i: int) -> None:
        c, w = coords[i], workers[i]
        barrier.wait()
        idle = 0
        while idle < 3:
            batch = c.lease(w.id, BATCH)
            if not batch:
                idle += 1
                time.sleep(0.01)
                continue
            idle = 0
            leased[i].extend(x.job_id for x in batch)
            finished[i].extend(c.finish(w.id, [report(x) for x in batch]))

    run_threads(work, THREADS)

    every = [job_id for ids in leased for job_id in ids]
    assert len(every) == JOBS
    assert Counter(every).most_common(1)[0][1] == 1  # no job leased twice
    assert set(every) == {j.id for j in coord.store.runs.jobs(run.id)}
    results = [r for rs in finished for r in rs]
    assert all(isinstance(r, Ended) and r.state is JobState.PASSED for r in results)
    assert sum(1 for ids in leased if ids) >= 2  # the work was actually shared

    done = coord.store.runs.get(run.id)
    assert done.state is RunState.PASSED
    assert done.counts == {"passed": JOBS}
    with coord.store.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(attempts)).scalar_one() == JOBS
        assert (
            conn.execute(select(func.count(func.distinct(attempts.c.job_id)))).scalar_one() == JOBS
        )
        assert conn.execute(select(runs.c.pending).where(runs.c.id == run.id)).scalar_one() == 0
    assert all(j.attempts == 1 for j in coord.store.runs.jobs(run.id))


def test_a_finish_racing_the_sweeper_is_recorded_once(
    coord: Coordinator, admin: Principal, open_store: Callable[..., Store]
) -> None:
    n = 60
    ttl = 0.25
    coord.lease_ttl = ttl
    sweeper = Coordinator(open_store(), lease_ttl=ttl)
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec({f"j{i}": {"command": "true"} for i in range(n)}))
    leases = coord.lease(w.id, n)
    assert len(leases) == n
    time.sleep(ttl * 0.5)  # the leases run out while the finishes go in

    results: dict[int, Ended | LeaseLost] = {}
    swept: list[Ended] = []
    stop = threading.Event()

    def work(i: int) -> None:
        if i == 0:
            try:
                for x in leases:
                    (results[x.attempt_id],) = coord.finish(w.id, [report(x)])
                    time.sleep(0.002)
            finally:
                stop.set()
        else:
            while not stop.is_set():
                swept.extend(sweeper.sweep())
                time.sleep(0.002)

    run_threads(work, 2)
    swept.extend(sweeper.sweep())

    by_attempt = {e.attempt_id for e in swept}
    passed = lost = 0
    for x in leases:
        job = coord.store.runs.job_by_id(x.job_id)
        (attempt,) = coord.store.runs.attempts(x.job_id)
        result = results[x.attempt_id]
        if isinstance(result, Ended):
            # the finish won: the sweeper did not touch it
            assert (job.state, attempt.state, result.state) == (
                JobState.PASSED,
                "passed",
                JobState.PASSED,
            )
            assert x.attempt_id not in by_attempt
            passed += 1
        else:
            assert isinstance(result, LeaseLost)
            assert (job.state, attempt.state) == (JobState.LOST, "expired")
            assert x.attempt_id in by_attempt
            lost += 1
    assert passed + lost == n
    assert len(swept) == lost  # each expiry recorded once
    final = coord.store.runs.get(run.id)
    assert final.state is (RunState.FAILED if lost else RunState.PASSED)
    assert sum(final.counts.values()) == n


def test_a_cancel_racing_finishes_ends_each_job_once(
    coord: Coordinator, admin: Principal, open_store: Callable[..., Store]
) -> None:
    n = 40
    other = Coordinator(open_store(), lease_ttl=30.0)
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec({f"j{i}": {"command": "true"} for i in range(n)}))
    leases = coord.lease(w.id, n)
    assert len(leases) == n
    results: dict[int, Ended | LeaseLost] = {}
    stopped: list[int] = []
    halfway = threading.Event()

    def work(i: int) -> None:
        if i == 0:
            try:
                for k, x in enumerate(leases):
                    (results[x.attempt_id],) = coord.finish(w.id, [report(x)])
                    if k == n // 4:
                        halfway.set()
            finally:
                halfway.set()
        else:
            halfway.wait(10)
            stopped.extend(other.store.runs.cancel(run.id, None, by="racer"))

    run_threads(work, 2)

    passed = canceled = 0
    for x in leases:
        job = coord.store.runs.job_by_id(x.job_id)
        (attempt,) = coord.store.runs.attempts(x.job_id)
        result = results[x.attempt_id]
        if isinstance(result, Ended):
            assert (job.state, attempt.state) == (JobState.PASSED, "passed")
            assert x.attempt_id not in stopped
            passed += 1
        else:
            assert (job.state, attempt.state) == (JobState.CANCELED, "canceled")
            assert x.attempt_id in stopped
            canceled += 1
    assert passed > n // 4  # the finishes before the cancel were kept
    assert canceled == len(stopped)
    assert passed + canceled == n
    assert coord.store.runs.get(run.id).state is (
        RunState.CANCELED if canceled else RunState.PASSED
    )
