"""The lease protocol on both engines: expiry, fencing, idempotent finish, retries, logs."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from integration_helpers import join, report, snapshot, spec, states, until
from sqlalchemy import func, select

from corral import events
from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Lease, Report, Upload, Worker
from corral.domain.states import JobState, RunState
from corral.errors import LeaseLost, NotFound
from corral.scheduler.placement import expand
from corral.store.leases import Ended, backoff
from corral.store.tables import attempts, log_chunks

TTL = 0.3


def one_job(coord: Coordinator, admin: Principal, **fields: object) -> tuple[Worker, int, int]:
    """A worker and a run of one job; returns (worker, run id, job id)."""
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec({"a": {"command": "true", **fields}}))
    (job,) = coord.store.runs.jobs(run.id)
    return w, run.id, job.id


def lease_one(coord: Coordinator, w: Worker) -> Lease:
    (lease,) = coord.lease(w.id, 5)
    return lease


def expire(coord: Coordinator) -> list[Ended]:
    time.sleep(TTL + 0.1)
    return coord.sweep()


def chunk(lease: Lease, seq: int, data: str, token: str | None = None) -> Upload:
    return Upload(lease.attempt_id, token or lease.token, seq, "stdout", 1.0 + seq, data)


# -- expiry ----------------------------------------------------------------------------------


def test_an_expired_lease_requeues_then_ends_lost(coord: Coordinator, admin: Principal) -> None:
    coord.lease_ttl = TTL
    w, run_id, job_id = one_job(coord, admin, retries=1)

    first = lease_one(coord, w)
    assert coord.sweep() == []  # not yet
    (ended,) = expire(coord)
    assert (ended.attempt_id, ended.job_id, ended.state) == (
        first.attempt_id,
        job_id,
        JobState.QUEUED,
    )
    job = coord.store.runs.job_by_id(job_id)
    assert job.state is JobState.QUEUED
    assert "lease expired" in job.reason and "retry 1 of 1" in job.reason
    assert coord.store.runs.get(run_id).state is RunState.RUNNING

    second = lease_one(coord, w)
    assert second.number == 2 and second.job_id == job_id
    (ended,) = expire(coord)
    assert ended.state is JobState.LOST
    job = coord.store.runs.job_by_id(job_id)
    assert (job.state, job.attempts) == (JobState.LOST, 2)
    assert job.ended_at is not None
    assert [(a.number, a.state) for a in coord.store.runs.attempts(job_id)] == [
        (1, "expired"),
        (2, "expired"),
    ]
    run = coord.store.runs.get(run_id)
    assert run.state is RunState.FAILED
    assert run.ended_at is not None
    assert coord.lease(w.id, 5) == []
    assert coord.sweep() == []  # nothing left to expire


def test_no_retries_means_lost_at_the_first_expiry(coord: Coordinator, admin: Principal) -> None:
    coord.lease_ttl = TTL
    w, run_id, job_id = one_job(coord, admin)
    lease_one(coord, w)
    (ended,) = expire(coord)
    assert (ended.job_id, ended.state) == (job_id, JobState.LOST)
    assert coord.store.runs.job_by_id(job_id).reason.startswith("lease expired")
    assert coord.store.runs.get(run_id).state is RunState.FAILED


def test_heartbeats_keep_a_lease(coord: Coordinator, admin: Principal) -> None:
    # a longer lease than elsewhere: a beat that comes late on a busy machine must not
    # look like a missing one (the lease outlives 5 beat intervals)
    ttl = 1.0
    coord.lease_ttl = ttl
    w, _, job_id = one_job(coord, admin)
    lease = lease_one(coord, w)
    coord.start(w.id, [(lease.attempt_id, lease.token, time.time())])
    deadline = time.monotonic() + 2.5 * ttl
    while time.monotonic() < deadline:
        assert coord.heartbeat(w.id, [(lease.attempt_id, lease.token)]) == []
        assert coord.sweep() == []
        time.sleep(ttl / 5)
    assert coord.store.runs.job_by_id(job_id).state is JobState.RUNNING
    # and without them it runs out
    time.sleep(ttl + 0.1)
    (ended,) = coord.sweep()
    assert ended.attempt_id == lease.attempt_id


# -- fencing ---------------------------------------------------------------------------------


def test_a_stale_holder_is_fenced_after_requeue(coord: Coordinator, admin: Principal) -> None:
    coord.lease_ttl = TTL
    w, _, job_id = one_job(coord, admin, retries=3)
    w2 = join(coord, admin, "w2")
    stale = lease_one(coord, w)
    expire(coord)
    fresh = lease_one(coord, w2)  # the job now belongs to w2
    coord.lease_ttl = 30.0
    coord.heartbeat(w2.id, [(fresh.attempt_id, fresh.token)])
    before = snapshot(coord.store, job_id)

    (result,) = coord.finish(w.id, [report(stale)])
    assert isinstance(result, LeaseLost)
    assert result.status == 409
    assert coord.heartbeat(w.id, [(stale.attempt_id, stale.token)]) == [stale.attempt_id]
    assert coord.start(w.id, [(stale.attempt_id, stale.token, 1.0)]) == [stale.attempt_id]
    assert coord.append_log(w.id, [chunk(stale, 0, "stale output")]) == [stale.attempt_id]
    assert coord.store.leases.release([(stale.attempt_id, stale.token)], "gone") == []
    assert snapshot(coord.store, job_id) == before
    assert coord.store.logs.read(stale.attempt_id) == []

    # the current holder is untouched and finishes normally
    (result,) = coord.finish(w2.id, [report(fresh)])
    assert isinstance(result, Ended) and result.state is JobState.PASSED
    (result,) = coord.finish(w.id, [report(stale, "failed", 1)])  # still refused
    assert isinstance(result, LeaseLost)
    assert coord.store.runs.job_by_id(job_id).state is JobState.PASSED


def test_a_wrong_token_for_the_current_attempt_is_refused(
    coord: Coordinator, admin: Principal
) -> None:
    w, _, job_id = one_job(coord, admin)
    lease = lease_one(coord, w)
    before = snapshot(coord.store, job_id)
    forged = Report(lease.attempt_id, "0" * 32, "passed", 0, "")
    (result,) = coord.finish(w.id, [forged])
    assert isinstance(result, LeaseLost)
    (result,) = coord.finish(w.id, [Report(lease.attempt_id + 99, lease.token, "passed", 0, "")])
    assert isinstance(result, LeaseLost)
    assert coord.heartbeat(w.id, [(lease.attempt_id, "0" * 32)]) == [lease.attempt_id]
    assert coord.start(w.id, [(lease.attempt_id, lease.token[:-1] + "x", 1.0)]) == [
        lease.attempt_id
    ]
    assert snapshot(coord.store, job_id) == before


def test_a_late_finish_after_lost_changes_nothing(coord: Coordinator, admin: Principal) -> None:
    coord.lease_ttl = TTL
    w, run_id, job_id = one_job(coord, admin)
    lease = lease_one(coord, w)
    expire(coord)
    before = snapshot(coord.store, job_id)
    (result,) = coord.finish(w.id, [report(lease)])
    assert isinstance(result, LeaseLost)
    assert snapshot(coord.store, job_id) == before
    assert coord.store.runs.get(run_id).state is RunState.FAILED


# -- idempotent finish -----------------------------------------------------------------------


def count_attempts(coord: Coordinator) -> int:
    with coord.store.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(attempts)).scalar_one())


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_the_same_finish_twice_records_once(
    coord: Coordinator, admin: Principal, outcome: str
) -> None:
    w, run_id, job_id = one_job(coord, admin)
    lease = lease_one(coord, w)
    rep = report(lease, outcome, 0 if outcome == "passed" else 1)
    (first,) = coord.finish(w.id, [rep])
    assert isinstance(first, Ended)
    after_first = snapshot(coord.store, job_id)
    run_after_first = coord.store.runs.get(run_id)

    (again,) = coord.finish(w.id, [rep])
    assert isinstance(again, Ended)
    assert (again.attempt_id, again.state) == (first.attempt_id, first.state)
    # a different outcome with the same token is the same (already recorded) report
    (other,) = coord.finish(w.id, [report(lease, "timed_out", None)])
    assert isinstance(other, Ended) and other.state is first.state
    assert snapshot(coord.store, job_id) == after_first
    assert coord.store.runs.get(run_id) == run_after_first
    assert count_attempts(coord) == 1


def test_the_same_finish_twice_in_one_batch(coord: Coordinator, admin: Principal) -> None:
    w, run_id, job_id = one_job(coord, admin)
    lease = lease_one(coord, w)
    first, second = coord.finish(w.id, [report(lease), report(lease)])
    assert isinstance(first, Ended) and first.state is JobState.PASSED
    assert isinstance(second, Ended) and second.state is JobState.PASSED
    assert count_attempts(coord) == 1
    assert [a.state for a in coord.store.runs.attempts(job_id)] == ["passed"]
    assert coord.store.runs.get(run_id).counts == {"passed": 1}


def test_a_finish_repeated_after_a_retry_was_queued(coord: Coordinator, admin: Principal) -> None:
    coord.store.leases.retry_backoff = 0.01
    w, _, job_id = one_job(coord, admin, retries=1)
    lease = lease_one(coord, w)
    rep = report(lease, "failed", 1)
    (first,) = coord.finish(w.id, [rep])
    assert isinstance(first, Ended) and first.state is JobState.QUEUED
    time.sleep(0.05)
    second_lease = lease_one(coord, w)
    before = snapshot(coord.store, job_id)
    (again,) = coord.finish(w.id, [rep])  # the worker never heard the first answer
    assert isinstance(again, Ended)
    assert snapshot(coord.store, job_id) == before
    assert second_lease.number == 2
    assert count_attempts(coord) == 2


# -- retries with back-off -------------------------------------------------------------------


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, 1.0) for n in (0, 1, 2, 3, 4)] == [1.0, 1.0, 2.0, 4.0, 8.0]
    assert backoff(30, 1.0) == 300.0
    assert backoff(2, 0.25) == 0.5


def test_retries_wait_for_their_back_off(coord: Coordinator, admin: Principal) -> None:
    base = 0.3
    coord.store.leases.retry_backoff = base
    w, run_id, job_id = one_job(coord, admin, retries=2)

    lease = lease_one(coord, w)
    t0 = time.time()
    (ended,) = coord.finish(w.id, [report(lease, "failed", 3)])
    assert isinstance(ended, Ended) and ended.state is JobState.QUEUED
    assert ended.queued == (job_id,)
    job = coord.store.runs.job_by_id(job_id)
    assert job.state is JobState.QUEUED
    assert job.not_before == pytest.approx(t0 + base, abs=0.15)
    assert job.not_before > time.time()
    assert "retry 1 of 2" in job.reason and "exit 3" in job.reason
    assert coord.lease(w.id, 5) == []  # not before its time
    assert coord.store.runs.get(run_id).state is RunState.RUNNING

    time.sleep(max(0.0, job.not_before - time.time()) + 0.05)
    lease = lease_one(coord, w)
    assert lease.number == 2
    t1 = time.time()
    (ended,) = coord.finish(w.id, [report(lease, "timed_out", None)])
    assert isinstance(ended, Ended) and ended.state is JobState.QUEUED
    job = coord.store.runs.job_by_id(job_id)
    assert job.not_before == pytest.approx(t1 + 2 * base, abs=0.15)  # doubled
    assert "retry 2 of 2" in job.reason
    assert coord.lease(w.id, 5) == []

    time.sleep(max(0.0, job.not_before - time.time()) + 0.05)
    lease = lease_one(coord, w)
    assert lease.number == 3
    (ended,) = coord.finish(w.id, [report(lease, "failed", 1)])
    assert isinstance(ended, Ended) and ended.state is JobState.FAILED  # retries spent
    job = coord.store.runs.job_by_id(job_id)
    assert (job.state, job.attempts, job.exit_code) == (JobState.FAILED, 3, 1)
    assert [(a.number, a.state) for a in coord.store.runs.attempts(job_id)] == [
        (1, "failed"),
        (2, "timed_out"),
        (3, "failed"),
    ]
    assert coord.store.runs.get(run_id).state is RunState.FAILED


def test_a_pass_after_a_retry_passes_the_run(coord: Coordinator, admin: Principal) -> None:
    coord.store.leases.retry_backoff = 0.01
    w, run_id, job_id = one_job(coord, admin, retries=5)
    coord.finish(w.id, [report(lease_one(coord, w), "failed", 1)])
    time.sleep(0.05)
    coord.finish(w.id, [report(lease_one(coord, w))])
    assert coord.store.runs.job_by_id(job_id).state is JobState.PASSED
    assert coord.store.runs.get(run_id).state is RunState.PASSED


def test_a_released_lease_goes_back_without_spending_a_try(
    coord: Coordinator, admin: Principal
) -> None:
    w, _, job_id = one_job(coord, admin)  # no retries at all
    lease = lease_one(coord, w)
    assert coord.release(w.id, [(lease.attempt_id, lease.token)], "draining") == [job_id]
    job = coord.store.runs.job_by_id(job_id)
    assert (job.state, job.reason) == (JobState.QUEUED, "draining")
    assert [a.state for a in coord.store.runs.attempts(job_id)] == ["released"]
    (result,) = coord.finish(w.id, [report(lease)])
    assert isinstance(result, LeaseLost)
    lease = lease_one(coord, w)
    assert lease.number == 2
    (ended,) = coord.finish(w.id, [report(lease, "failed", 1)])
    assert isinstance(ended, Ended) and ended.state is JobState.FAILED  # 0 retries: no retry


# -- logs ------------------------------------------------------------------------------------


def test_log_chunks_are_fenced_and_stored_once(coord: Coordinator, admin: Principal) -> None:
    w, _, job_id = one_job(coord, admin)
    lease = lease_one(coord, w)
    assert coord.append_log(w.id, [chunk(lease, 0, "hello "), chunk(lease, 1, "world\n")]) == []
    # the worker did not hear the answer and sends chunk 1 again, with chunk 2
    assert coord.append_log(w.id, [chunk(lease, 1, "world\n"), chunk(lease, 2, "bye\n")]) == []
    assert coord.append_log(w.id, [chunk(lease, 2, "bye\n"), chunk(lease, 2, "bye\n")]) == []
    got = coord.store.logs.read(lease.attempt_id)
    assert [(c.seq, c.data) for c in got] == [(0, "hello "), (1, "world\n"), (2, "bye\n")]
    assert [c.seq for c in coord.store.logs.read(lease.attempt_id, after=0)] == [1, 2]
    assert [c.seq for c in coord.store.logs.read(lease.attempt_id, limit=1)] == [0]
    (attempt,) = coord.store.runs.attempts(job_id)
    assert attempt.log_bytes == len("hello world\nbye\n")

    # a wrong token, in the same batch as a good chunk: only the good one is stored
    lost = coord.append_log(
        w.id, [chunk(lease, 3, "forged", token="f" * 32), chunk(lease, 4, "ok")]
    )
    assert lost == [lease.attempt_id]
    assert [c.seq for c in coord.store.logs.read(lease.attempt_id)] == [0, 1, 2, 4]

    coord.finish(w.id, [report(lease)])
    assert coord.append_log(w.id, [chunk(lease, 5, "late")]) == [lease.attempt_id]
    with coord.store.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(log_chunks)).scalar_one() == 4


def test_log_streams_are_kept_apart(coord: Coordinator, admin: Principal) -> None:
    w, _, _ = one_job(coord, admin)
    lease = lease_one(coord, w)
    coord.append_log(
        w.id,
        [
            Upload(lease.attempt_id, lease.token, 0, "stdout", 1.0, "out"),
            Upload(lease.attempt_id, lease.token, 1, "stderr", 2.0, "err"),
        ],
    )
    got = coord.store.logs.read(lease.attempt_id)
    assert [(c.stream, c.ts, c.data) for c in got] == [
        ("stdout", 1.0, "out"),
        ("stderr", 2.0, "err"),
    ]
    assert states(coord, lease.run_id) == {"a": "leased"}


# -- which leasers a submit sends to the store -------------------------------------------------


def counting_leases(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The workers whose lease reached the store, in order."""
    asked: list[int] = []
    real = coord.store.leases.lease_many

    def lease_many(asks: list[tuple[int, int]], ttl: float) -> list[list[Lease] | NotFound]:
        asked.extend(w for w, _ in asks)
        return real(asks, ttl)

    monkeypatch.setattr(coord.store.leases, "lease_many", lease_many)
    return asked


def test_a_submit_sends_only_workers_that_could_take_its_jobs_to_the_store(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = join(coord, admin, "a", site="a")
    b = join(coord, admin, "b", site="b")
    asked = counting_leases(coord, monkeypatch)
    assert coord.lease(a.id, 5) == [] and coord.lease(b.id, 5) == []  # both came back short
    asked.clear()

    coord.submit(admin, spec({"x": {"command": "true", "on": {"site": "a"}}}))
    assert coord.lease(b.id, 5) == []
    assert asked == []  # b could not take it: no transaction for b
    (lease,) = coord.lease(a.id, 5)
    assert asked == [a.id]

    # a notice for everyone (a lease given back) sends b to the store again
    assert coord.lease(a.id, 5) == []
    asked.clear()
    coord.release(a.id, [(lease.attempt_id, lease.token)], "given back")
    assert coord.lease(b.id, 5) == []
    assert asked == [b.id]


def test_a_skipped_worker_is_one_no_job_of_the_submit_could_go_to(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # roles are many-valued; kinds count too
    w = join(coord, admin, "w", allow=("command",), role="app,db")
    asked = counting_leases(coord, monkeypatch)
    for job, goes in [
        ({"command": "true", "on": {"role": "web"}}, False),
        ({"code": "print(1)", "on": {"role": "db"}}, False),  # a kind w does not allow
        ({"command": "true", "on": {"role": "db", "zone": "x"}}, False),
        ({"command": "true", "on": {"role": "db"}}, True),
    ]:
        assert coord.lease(w.id, 5) == []  # came back short
        asked.clear()
        coord.submit(admin, spec({"x": job}))
        got = coord.lease(w.id, 5)
        assert (asked == [w.id]) == goes, job
        for lease in got:
            coord.report(w.id, finished=[report(lease)])


def test_a_notice_in_between_is_not_lost_to_a_worker_that_could_not_take_the_submit(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = join(coord, admin, "a", site="a")
    b = join(coord, admin, "b", site="b")
    assert coord.lease(a.id, 5) == [] and coord.lease(b.id, 5) == []
    # a job b can take is queued while its notice has not reached b's memory yet: another
    # coordinator's submit, told only as a queue notice
    coord.store.runs.submit(
        coord.default_project,
        spec({"y": {"command": "true", "on": {"site": "b"}}}),
        expand(spec({"y": {"command": "true", "on": {"site": "b"}}}), []),
        submitted_by="elsewhere",
    )
    coord.hub.notify(events.QUEUE)
    coord.submit(admin, spec({"x": {"command": "true", "on": {"site": "a"}}}))
    (got,) = coord.lease(b.id, 5)
    assert got.job_name == "y"


def test_a_lease_batch_answers_each_worker_in_asking_order(
    coord: Coordinator, admin: Principal
) -> None:
    a = join(coord, admin, "a", site="a")
    b = join(coord, admin, "b", site="b")
    coord.submit(admin, spec({"x": {"command": "true", "on": {"site": "b"}}}))
    # the workers are read together; one unknown worker fails alone
    got = coord.store.leases.lease_many([(b.id, 5), (999_999, 5), (a.id, 5)], 30.0)
    first, unknown, last = got
    assert [x.job_name for x in first] == ["x"]  # type: ignore[union-attr]
    assert isinstance(unknown, NotFound) and "999999" in str(unknown)
    assert last == []


def test_workers_of_one_lease_batch_never_share_a_job(coord: Coordinator, admin: Principal) -> None:
    # every worker can take every job: each later pick must leave out what earlier ones took,
    # since the batch marks its jobs leased only once every worker has picked
    ws = [join(coord, admin, f"w{i}") for i in range(3)]
    run = coord.submit(admin, spec({f"j{i}": {"command": "true"} for i in range(5)}))
    got = coord.store.leases.lease_many([(w.id, 2) for w in ws], 30.0)
    batches = [b for b in got if not isinstance(b, NotFound)]
    assert [[x.job_name for x in b] for b in batches] == [["j0", "j1"], ["j2", "j3"], ["j4"]]
    for w, batch in zip(ws, batches, strict=True):
        for lease in batch:
            # one attempt per job, the worker's, under the token its lease holds
            (attempt,) = coord.store.runs.attempts(lease.job_id)
            assert (attempt.id, attempt.worker) == (lease.attempt_id, w.name)
            assert coord.store.runs.job_by_id(lease.job_id).state is JobState.LEASED
    # each lease its own token of 128 random bits (one draw serves the whole batch)
    tokens = [x.token for b in batches for x in b]
    assert len(set(tokens)) == 5
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in tokens)
    # and a token fences only its own attempt
    first, second = batches[0]
    assert coord.heartbeat(ws[0].id, [(second.attempt_id, first.token)]) == [second.attempt_id]
    coord.finish(ws[0].id, [report(x) for b in batches for x in b])
    assert coord.store.runs.get(run.id).state is RunState.PASSED


# A queue of every kind of job a batch must tell apart: labels a worker lacks, labels in
# several pairs, kinds a worker does not allow, jobs for one worker only (fanned out), no labels.
_MIXED = {
    "for-b": {"command": "true", "on": {"site": "b"}},
    "anyone": {"command": "true"},
    "some-code": {"code": "print(1)"},
    "any-app": {"command": "true", "on": {"role": "app"}},
    "app-linux": {"command": "true", "on": {"role": "app", "os": "linux"}},
    "for-c": {"command": "true", "on": {"site": "c"}},
    "for-nobody": {"command": "true", "on": {"site": "zz"}},
    "each-app": {"command": "true", "on": {"role": "app"}, "fanout": "each"},
    "anyone-2": {"command": "true"},
    "for-a": {"command": "true", "on": {"site": "a"}},
    "any-app-2": {"command": "true", "on": {"role": "app"}},
    "anyone-3": {"command": "true"},
}


def _mixed_workers(coord: Coordinator, admin: Principal) -> list[Worker]:
    return [
        join(coord, admin, "a", site="a", role="app"),
        join(coord, admin, "b", ("command", "code"), site="b", role="app", os="linux"),
        join(coord, admin, "c", site="c"),
        join(coord, admin, "d", site="d"),
    ]


@pytest.mark.parametrize("front", [1000, 2], ids=["whole-queue-read", "front-cut-short"])
def test_a_batch_leases_as_its_workers_would_one_after_another(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch, front: int
) -> None:
    # several workers leasing together read the queue's front once (store/front.py); each
    # must get exactly what it would have leased on its own, in the same order of asking,
    # also when the front read stops short and the rest comes from the store
    monkeypatch.setattr("corral.store.leases.MAX_FRONT", front)
    workers = _mixed_workers(coord, admin)
    coord.drain(admin, "d")  # a draining worker takes nothing
    asks = [(workers[1].id, 3), (workers[0].id, 2), (workers[2].id, 2), (workers[3].id, 2)]
    leases = coord.store.leases

    def names(got: list[list[Lease] | NotFound]) -> list[list[str]]:
        return [[f"{x.job_name}{x.instance or ''}" for x in b] for b in got]  # type: ignore[union-attr]

    first = coord.submit(admin, spec(_MIXED, name="together"))
    together = names(leases.lease_many(asks, 30.0))
    coord.cancel(admin, str(first.id))  # what no one took leaves the queue
    coord.submit(admin, spec(_MIXED, name="alone"))
    alone = [names(leases.lease_many([ask], 30.0))[0] for ask in asks]
    assert together == alone
    assert together == [
        ["for-b", "anyone", "some-code"],
        ["any-app", "each-appa"],
        ["for-c", "anyone-2"],
        [],
    ]


# -- single-job runs nobody waits for: leased a few at a time ----------------------------------


def _lease_in_thread(coord: Coordinator, worker: Worker, n: int) -> tuple[Any, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(
        target=lambda: got.append(coord.lease_wait(worker.id, n, 3.0)), daemon=True
    )
    thread.start()
    until(lambda: coord.hub.watched(events.QUEUE))  # it sleeps on the queue now
    return thread, got


def test_a_stream_of_single_runs_nobody_waits_for_is_leased_together(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("corral.coordinator.QUIET_LEASE", 5.0)
    w = join(coord, admin, "w1")
    thread, got = _lease_in_thread(coord, w, 2)
    try:
        coord.submit(admin, spec({"a": {"command": "true"}}, name="one"))
        time.sleep(0.05)  # the first run woke the lease, which waits for a second
        assert not got
        coord.submit(admin, spec({"a": {"command": "true"}}, name="two"))
        thread.join(2.0)  # two runs are all the worker asked for: it leases now, both at once
        assert [x.run_name for x in got[0]] == ["one", "two"]
    finally:
        thread.join(5.0)  # its store connection back before the database goes


@pytest.mark.parametrize("urgent", ["waited-for", "of-two-jobs", "released"])
def test_work_that_may_not_wait_is_leased_at_once(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch, urgent: str
) -> None:
    monkeypatch.setattr("corral.coordinator.QUIET_LEASE", 5.0)
    w = join(coord, admin, "w1")
    if urgent == "released":
        coord.submit(admin, spec({"a": {"command": "true"}}, name="held"))
        (lease,) = coord.lease(w.id, 1)
    thread, got = _lease_in_thread(coord, w, 4)
    try:
        coord.submit(admin, spec({"a": {"command": "true"}}, name="quiet"))
        started = time.monotonic()
        if urgent == "waited-for":
            coord.submit(admin, spec({"a": {"command": "true"}}, name="now"), watched=True)
        elif urgent == "of-two-jobs":
            coord.submit(admin, spec({"a": {"command": "true"}, "b": {"command": "true"}}))
        else:
            coord.report(w.id, released=[(lease.attempt_id, lease.token)])
        thread.join(2.0)
        assert got and time.monotonic() - started < 2.0  # not the 5 s a quiet run may wait
        # the notice that may not wait ended the wait: its job is in the same lease
        names = sorted(x.run_name for x in got[0])
        assert (
            names
            == {
                "waited-for": ["now", "quiet"],
                "of-two-jobs": ["quiet", "r", "r"],
                "released": ["held", "quiet"],
            }[urgent]
        )
    finally:
        thread.join(5.0)
