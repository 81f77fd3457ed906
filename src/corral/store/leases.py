"""The lease protocol in the store: lease, start, heartbeat, finish, release, expire.

Every attempt carries a random token; only the job's current attempt with its token may
start, heartbeat, log or finish (fencing). Expiry is measured by the store's clock.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)

from corral.domain.labels import pairs
from corral.domain.models import Lease, Report
from corral.domain.states import Event, JobState, RunState, next_state
from corral.errors import LeaseLost, NotFound
from corral.store.dataflow import record_outputs
from corral.store.engine import Database
from corral.store.front import MAX_FRONT, Front, front_query, lease_columns
from corral.store.prepared import Prepared
from corral.store.progress import Settled, mark_started, move, settle
from corral.store.run_limits import parallel_rule, within_parallel
from corral.store.schedules import HOST_SCHEDULES, LIVE_RUNS, one_per_host, schedule_rules
from corral.store.shared import publishes
from corral.store.tables import (
    ACTIVE_STATES,
    QUEUED,
    attempts,
    job_selectors,
    jobs,
    runs,
    workers,
)

ACTIVE = ("leased", "running")
# the columns a new attempt is written with (the rest start empty)
_NEW_ATTEMPT = (
    "job_id",
    "number",
    "worker_id",
    "worker_name",
    "lease_token",
    "lease_expires_at",
    "state",
    "leased_at",
    "resources",
    "reason",
    "log_bytes",
)
_OUTCOME_EVENTS = {"passed": Event.PASS, "failed": Event.FAIL, "timed_out": Event.TIME_OUT}


@dataclass(frozen=True)
class Ended:
    """What the store did with an ended attempt: the job's new state and the run touched."""

    attempt_id: int
    job_id: int
    run_id: int
    state: JobState
    queued: tuple[int, ...] = ()  # jobs this one made ready (or a retry of itself)
    run_ended: bool = False  # this end was the run's last
    not_before: float = 0.0  # a retry waiting out its back-off: leasable from then (store clock)


_TOKEN_BYTES = 16  # a lease token: 128 random bits, as hex


def backoff(tries: int, base: float) -> float:
    """Seconds before retry number `tries`: doubling from `base`, at most 5 minutes."""
    return float(min(base * 2 ** max(tries - 1, 0), 300.0))


def _with_settled(
    out: Sequence[Ended | LeaseLost], settled: Mapping[int, Settled]
) -> list[Ended | LeaseLost]:
    """Ends annotated with what settling their runs did: jobs made ready (told once per run,
    on its first end) and whether the run ended."""
    told: set[int] = set()
    result: list[Ended | LeaseLost] = []
    for item in out:
        s = settled.get(item.run_id) if isinstance(item, Ended) else None
        if not isinstance(item, Ended) or s is None:
            result.append(item)
            continue
        queued = item.queued
        if s.queued and item.run_id not in told:
            told.add(item.run_id)
            queued = (*queued, *s.queued)
        # built directly, not through dataclasses.replace: once per end on the finish path
        result.append(
            Ended(
                attempt_id=item.attempt_id,
                job_id=item.job_id,
                run_id=item.run_id,
                state=item.state,
                queued=queued,
                run_ended=s.ended,
                not_before=item.not_before,
            )
        )
    return result


class Leases:
    def __init__(self, db: Database, retry_backoff: float = 1.0) -> None:
        self.db = db
        self.retry_backoff = retry_backoff
        # The hot statements are built once: building SQLAlchemy expressions per call costs
        # more than running them.
        now = db.now_sql()
        foreign_label = exists().where(
            job_selectors.c.job_id == jobs.c.id,
            not_(job_selectors.c.pair.in_(bindparam("pairs", expanding=True))),
        )
        # the workers of a lease batch, read at once (a fleet's sites lease together)
        self._workers_of = Prepared(
            select(
                workers.c.id,
                workers.c.name,
                workers.c.labels,
                workers.c.allow,
                workers.c.draining,
                workers.c.last_seen,
            ).where(workers.c.id.in_(bindparam("ids", expanding=True)))
        )
        self._pick = (
            select(*lease_columns(jobs))
            .join(runs, runs.c.id == jobs.c.run_id)
            .where(
                jobs.c.state == QUEUED,
                jobs.c.not_before <= now,
                or_(jobs.c.target_worker_id.is_(None), jobs.c.target_worker_id == bindparam("wid")),
                jobs.c.kind.in_(bindparam("kinds", expanding=True)),
                or_(jobs.c.selector_size == 0, not_(foreign_label)),
                # picked for an earlier worker of the same batch, not yet marked leased
                jobs.c.id.not_in(bindparam("taken", expanding=True)),
            )
            .order_by(jobs.c.id)
            .limit(bindparam("n"))
        )
        self._pick_fleet = self._pick.add_columns(runs.c.schedule).where(*schedule_rules())
        if db.is_postgres:
            self._pick = self._pick.with_for_update(skip_locked=True, of=jobs)
            self._pick_fleet = self._pick_fleet.with_for_update(skip_locked=True, of=jobs)
        # (host schedules live, a max_parallel run live) -> the pick
        self._picks = {
            (fleet, limited): Prepared(
                (self._pick_fleet if fleet else self._pick)
                .add_columns(runs.c.max_parallel)
                .where(parallel_rule())
                if limited
                else (self._pick_fleet if fleet else self._pick)
            )
            for fleet in (False, True)
            for limited in (False, True)
        }
        # the schedules that look at hosts, and max_parallel, cost subqueries: only while such
        # a run is live (one look at the runs for both)
        self._fleet_live = Prepared(
            select(
                func.max(case((runs.c.schedule.in_(HOST_SCHEDULES), 1), else_=0)),
                func.max(case((runs.c.max_parallel.is_not(None), 1), else_=0)),
            ).where(
                runs.c.state.in_(LIVE_RUNS),
                or_(runs.c.schedule.in_(HOST_SCHEDULES), runs.c.max_parallel.is_not(None)),
            )
        )
        self._front = front_query(db, now)
        self._any_ready = Prepared(
            select(jobs.c.id).where(jobs.c.state == QUEUED, jobs.c.not_before <= now).limit(1)
        )
        # whether the last pick saw a live per-host or exclusive run: an end then frees a host
        self.host_schedules_live = False
        # whether it saw a live run with max_parallel: an end then frees a place in it
        self.parallel_limits_live = False
        self._touched: dict[int, float] = {}  # when each worker's last_seen was last written
        self._idle: set[int] = set()  # workers whose last lease found nothing to do
        self._insert_attempt = Prepared(
            insert(attempts).values({c: bindparam(c) for c in _NEW_ATTEMPT})
        )
        self._new_attempts = Prepared(
            select(attempts.c.id, attempts.c.lease_token).where(
                attempts.c.job_id.in_(bindparam("jids", expanding=True))
            )
        )
        self._mark_leased = Prepared(
            update(jobs)
            .where(jobs.c.id == bindparam("jid"), jobs.c.state == JobState.QUEUED.value)
            .values(
                state=next_state(JobState.QUEUED, Event.LEASE).value,
                current_attempt_id=bindparam("aid"),
                attempts=jobs.c.attempts + 1,
                tries=jobs.c.tries + 1,
                worker_name=bindparam("wname"),
                reason="",
            )
        )
        self._mark_shared = Prepared(
            update(runs)
            .where(runs.c.id == bindparam("rid"), runs.c.shared.is_(False))
            .values(shared=True)
        )
        self._seen = Prepared(
            update(workers).where(workers.c.id == bindparam("wid")).values(last_seen=now)
        )
        self._attempts_of = Prepared(
            select(
                attempts.c.id,
                attempts.c.lease_token,
                attempts.c.state,
                attempts.c.job_id,
                attempts.c.started_at,
            ).where(attempts.c.id.in_(bindparam("ids", expanding=True)))
        )
        jobs_of = select(
            jobs.c.id,
            jobs.c.run_id,
            jobs.c.name,
            jobs.c.state,
            jobs.c.tries,
            jobs.c.retries,
            jobs.c.current_attempt_id,
            jobs.c.started_at,
            jobs.c.needed,
        ).where(jobs.c.id.in_(bindparam("ids", expanding=True)))
        # Lock order on PostgreSQL, everywhere: jobs (by id), then attempts, then runs (by id);
        # the sweeper and a finish of the same attempt would deadlock otherwise.
        jobs_of = jobs_of.order_by(jobs.c.id)
        self._jobs_of = Prepared(jobs_of.with_for_update() if db.is_postgres else jobs_of)
        self._end_job = Prepared(
            update(jobs)
            .where(jobs.c.id == bindparam("jid"), jobs.c.state == bindparam("old"))
            .values(
                state=bindparam("new"),
                exit_code=bindparam("exit_code"),
                reason=bindparam("reason"),
                ended_at=bindparam("ended_at"),
                started_at=bindparam("started_at"),
                not_before=bindparam("not_before"),
                current_attempt_id=bindparam("current"),
            )
        )
        self._end_attempt = Prepared(
            update(attempts)
            .where(attempts.c.id == bindparam("aid"))
            .values(
                state=bindparam("state"),
                ended_at=bindparam("ended_at"),
                started_at=bindparam("started_at"),
                exit_code=bindparam("exit_code"),
                reason=bindparam("reason"),
                resources=bindparam("resources"),
                result=bindparam("result"),
            )
        )

    def lease(self, worker_id: int, max_jobs: int, ttl: float) -> list[Lease]:
        """Hand up to `max_jobs` queued jobs that match the worker to it, in one transaction."""
        (found,) = self.lease_many([(worker_id, max_jobs)], ttl)
        if isinstance(found, Exception):
            raise found
        return found

    def lease_many(
        self, asks: Sequence[tuple[int, int]], ttl: float
    ) -> list[list[Lease] | NotFound]:
        """Several workers' leases, (worker, max jobs) each, in one transaction: in asking order,
        each worker's list, or NotFound for a worker that is not there."""
        out: list[list[Lease] | NotFound] = [[] for _ in asks]
        todo = [i for i, (_, n) in enumerate(asks) if n > 0]
        idle = {i for i in todo if self._idle_lately(asks[i][0])}
        if idle:
            # an idle worker asks often: answer "nothing" from a read, without the write lock
            # (a write each second keeps its last_seen)
            with self.db.read() as conn:
                if self._any_ready.first(conn) is None:
                    todo = [i for i in todo if i not in idle]
        if not todo:
            return out
        with self.db.write(durable=False) as conn:
            now = self.db.now(conn)
            # once for the whole batch: leasing changes no run's schedule or limits
            live = self._fleet_live.one(conn)
            fleet, limited = bool(live[0]), bool(live[1])
            self.host_schedules_live = fleet
            self.parallel_limits_live = limited
            fresh: set[int] = set()
            found = self._workers_of.all(conn, {"ids": sorted({asks[i][0] for i in todo})})
            by_id = {w.id: w for w in found}
            picks: list[tuple[int, Any, list[Any]]] = []  # (ask, worker, its jobs) to record
            taken: set[int] = set()
            front = None
            if len(todo) > 1 and not (fleet or limited):
                # several workers (a fleet's sites): the queue's front read once for all
                front = self._read_front(conn, [(by_id.get(asks[i][0]), asks[i][1]) for i in todo])
            for i in todo:
                worker_id, max_jobs = asks[i]
                worker = by_id.get(worker_id)
                if worker is None:
                    out[i] = NotFound(f"no worker {worker_id}")
                    continue
                picked = self._pick_for(conn, now, worker, max_jobs, fleet, limited, taken, front)
                if fleet or limited:
                    # schedules and limits read what earlier workers took: record it at once
                    out[i] = self._record(conn, now, ttl, [(worker, picked)], fresh)[0]
                elif picked:
                    picks.append((i, worker, picked))
                    taken.update(r.id for r in picked)
            # everyone else's in one go: an insert and an update for the batch, not per job
            recorded = self._record(conn, now, ttl, [(w, p) for _, w, p in picks], fresh)
            for (i, _, _), leases in zip(picks, recorded, strict=True):
                out[i] = leases
            if fresh:
                # once, at the end, in id order: the runs' row locks in the order finish takes them
                mark_started(conn, self.db, fresh)
        return out

    def _idle_lately(self, worker_id: int) -> bool:
        return (
            worker_id in self._idle and time.monotonic() - self._touched.get(worker_id, 0.0) < 1.0
        )

    def _pick_for(
        self,
        conn: Connection,
        now: float,
        worker: Any,
        max_jobs: int,
        fleet: bool,
        limited: bool,
        taken: set[int],
        front: Front | None = None,
    ) -> list[Any]:
        """The jobs one worker (its row as read in this transaction) is to lease, not yet
        recorded (`fleet`, `limited`: whether a live run has a host schedule, or a
        max_parallel; `taken`: jobs already picked for other workers of the batch). With the
        batch's `front`, from it; the store is asked only for what lies behind a front that
        was cut at its limit."""
        self._touched[worker.id] = time.monotonic()
        if worker.draining:
            picked: list[Any] = []
        elif front is None:
            picked = self._pick_sql(conn, worker, max_jobs, taken, fleet, limited)
        else:
            picked = front.take(worker, max_jobs, taken)
            if len(picked) < max_jobs and front.full:
                more = self._pick_sql(conn, worker, max_jobs - len(picked), taken)
                taken.update(r.id for r in more)
                picked += more
        self._noted(conn, now, worker, picked)
        return picked

    def _pick_sql(
        self,
        conn: Connection,
        worker: Any,
        n: int,
        taken: set[int],
        fleet: bool = False,
        limited: bool = False,
    ) -> list[Any]:
        picked = self._picks[fleet, limited].all(
            conn,
            {
                "wid": worker.id,
                "pairs": pairs(worker.labels),
                "kinds": list(worker.allow),
                "n": n,
                "taken": sorted(taken),
            },
        )
        if fleet:
            picked = one_per_host(picked)
        if limited:
            picked = within_parallel(conn, self.db, picked)
        return picked

    def _read_front(self, conn: Connection, asking: Sequence[tuple[Any, int]]) -> Front:
        """The queue's front for these (worker row or None, jobs wanted): as many jobs as
        they want in all, of the kinds any of them allows."""
        able = [(w, n) for w, n in asking if w is not None and not w.draining]
        kinds = sorted({k for w, _ in able for k in w.allow})
        want = min(sum(n for _, n in able), MAX_FRONT)
        if not kinds or want <= 0:
            return Front([], [], full=False)
        return Front.read(conn, self._front, kinds, want)

    def _noted(self, conn: Connection, now: float, worker: Any, picked: list[Any]) -> None:
        """What a pick tells of its worker: seen now, idle or not."""
        if now - worker.last_seen > 1.0:  # "last seen" to the second: one write a second
            self._seen.execute(conn, {"wid": worker.id})
        if not picked:
            self._idle.add(worker.id)
        else:
            self._idle.discard(worker.id)

    def _record(
        self,
        conn: Connection,
        now: float,
        ttl: float,
        picks: Sequence[tuple[Any, Sequence[Any]]],
        fresh: set[int],
    ) -> list[list[Lease]]:
        """Attempts for picked jobs, (worker, its jobs) each, and the jobs marked leased: one
        insert and one update for them all. Returns each worker's leases; adds the runs they
        start to `fresh`."""
        picked_rows = [(worker, row) for worker, picked in picks for row in picked]
        if not picked_rows:
            return [[] for _ in picks]
        # the batch's lease tokens from one read of the system's random source, not one each
        raw = secrets.token_bytes(_TOKEN_BYTES * len(picked_rows))
        rows = [
            (worker, row, raw[i * _TOKEN_BYTES : (i + 1) * _TOKEN_BYTES].hex())
            for i, (worker, row) in enumerate(picked_rows)
        ]
        self._insert_attempt.many(
            conn,
            [
                {
                    "job_id": row.id,
                    "number": row.attempts + 1,
                    "worker_id": worker.id,
                    "worker_name": worker.name,
                    "lease_token": token,
                    "lease_expires_at": now + ttl,
                    "state": "leased",
                    "leased_at": now,
                    "resources": {},
                    "reason": "",
                    "log_bytes": 0,
                }
                for worker, row, token in rows
            ],
        )
        # the new attempts' ids, by their tokens (read through the jobs' index)
        made = {
            r.lease_token: r.id
            for r in self._new_attempts.all(conn, {"jids": [row.id for _, row, _ in rows]})
        }
        self._mark_leased.many(
            conn,
            [
                {"jid": row.id, "aid": made[token], "wname": worker.name}
                for worker, row, token in rows
            ],
        )
        fresh.update(row.run_id for _, row, _ in rows if row.run_state == RunState.QUEUED.value)
        leases = iter(
            Lease(
                attempt_id=made[token],
                token=token,
                job_id=row.id,
                run_id=row.run_id,
                run_name=row.run_name,
                job_name=row.name,
                instance=row.instance,
                number=row.attempts + 1,
                payload=row.payload,
                timeout=row.timeout,
                ttl=ttl,
                run_shared=bool(row.run_shared),
            )
            for _, row, token in rows
        )
        return [[next(leases) for _ in picked] for _, picked in picks]

    def _held(
        self, conn: Connection, items: Sequence[tuple[int, str]]
    ) -> tuple[dict[int, Any], list[int]]:
        """Split (attempt, token) pairs into the rows still held and the ids that are not."""
        ids = [a for a, _ in items]
        found = {r.id: r for r in self._attempts_of.all(conn, {"ids": ids})}
        held: dict[int, Any] = {}
        lost: list[int] = []
        for aid, token in items:
            row = found.get(aid)
            if row is not None and secrets.compare_digest(row.lease_token, token):
                held[aid] = row
            else:
                lost.append(aid)
        return held, lost

    def _lock_jobs(self, conn: Connection, held: Mapping[int, Any]) -> None:
        """Take the job row locks first (PostgreSQL), in the order finish takes them."""
        if self.db.is_postgres and held:
            self._jobs_of.all(conn, {"ids": sorted({r.job_id for r in held.values()})})

    def start(self, items: Sequence[tuple[int, str, float]]) -> list[int]:
        """Attempts whose process started (attempt, token, when). Returns the ids not held."""
        with self.db.write(durable=False) as conn:
            held, lost = self._held(conn, [(a, t) for a, t, _ in items])
            self._lock_jobs(conn, held)
            when = {a: ts for a, _, ts in items}
            for aid, row in held.items():
                if row.state != "leased":
                    if row.state not in ACTIVE:
                        lost.append(aid)
                    continue  # already running: starting twice changes nothing
                conn.execute(
                    update(attempts)
                    .where(attempts.c.id == aid, attempts.c.state == "leased")
                    .values(state="running", started_at=when[aid])
                )
                job = conn.execute(
                    select(jobs.c.state, jobs.c.started_at).where(jobs.c.id == row.job_id)
                ).one()
                if job.state == JobState.LEASED.value:
                    values: dict[str, Any] = {}
                    if job.started_at is None:
                        values["started_at"] = when[aid]
                    move(conn, self.db, row.job_id, JobState.LEASED, Event.START, **values)
            return lost

    def heartbeat(self, items: Sequence[tuple[int, str]], ttl: float) -> list[int]:
        """Extend the leases still held; returns the attempt ids that are not (stop them)."""
        if not items:
            return []
        with self.db.write(durable=False) as conn:
            held, lost = self._held(conn, items)
            live = [aid for aid, row in held.items() if row.state in ACTIVE]
            lost += [aid for aid, row in held.items() if row.state not in ACTIVE]
            if live:
                conn.execute(
                    update(attempts)
                    .where(attempts.c.id.in_(live), attempts.c.state.in_(ACTIVE))
                    .values(lease_expires_at=self.db.now_sql() + ttl)
                )
            return lost

    def finish(self, reports: Sequence[Report]) -> list[Ended | LeaseLost]:
        """Record ended attempts: exactly once per attempt; the same report twice is a no-op.

        A whole batch takes one transaction and a fixed number of statements.
        """
        if not reports:
            return []
        out: list[Ended | LeaseLost] = []
        with self.db.write() as conn:
            now = self.db.now(conn)
            held, _lost = self._held(conn, [(r.attempt_id, r.token) for r in reports])
            job_ids = sorted({row.job_id for row in held.values()})
            found = {j.id: j for j in self._jobs_of.all(conn, {"ids": job_ids})}
            job_updates: list[dict[str, Any]] = []
            attempt_updates: list[dict[str, Any]] = []
            by_run: dict[int, list[tuple[str, JobState, JobState]]] = defaultdict(list)
            unblock: dict[int, set[str]] = defaultdict(set)
            seen: dict[int, Ended] = {}  # attempts this batch recorded
            kept: list[tuple[int, int, Sequence[tuple[str, str, int]]]] = []  # outputs
            shared_runs: set[int] = set()  # runs a passed job published key/values in
            for rep in reports:
                row = held.get(rep.attempt_id)
                job = found.get(row.job_id) if row is not None else None
                if row is None or job is None:
                    out.append(LeaseLost(f"attempt {rep.attempt_id}: not the current lease"))
                    continue
                if rep.attempt_id in seen:
                    # the same finish twice in one batch: the answer the first one got
                    out.append(seen[rep.attempt_id])
                    continue
                if row.state in _OUTCOME_EVENTS:
                    # the same finish again: already recorded, nothing changes
                    out.append(Ended(rep.attempt_id, job.id, job.run_id, JobState(job.state)))
                    continue
                state = JobState(job.state)
                if (
                    row.state not in ACTIVE
                    or job.current_attempt_id != rep.attempt_id
                    or not state.active
                ):
                    out.append(LeaseLost(f"attempt {rep.attempt_id}: lease {row.state}"))
                    continue
                event = _OUTCOME_EVENTS.get(rep.outcome, Event.FAIL)
                reason, not_before = rep.reason, 0.0
                current: int | None = job.current_attempt_id
                ended_at: float | None = now
                if event is not Event.PASS and job.tries <= job.retries:
                    event = Event.RETRY
                    delay = backoff(job.tries, self.retry_backoff)
                    not_before, current, ended_at = now + delay, None, None
                    reason = f"{rep.reason}; retry {job.tries} of {job.retries} in {delay:.0f}s"
                new = next_state(state, event)
                started = job.started_at or rep.started_at or row.started_at or now
                job_updates.append(
                    {
                        "jid": job.id,
                        "old": state.value,
                        "new": new.value,
                        "exit_code": rep.exit_code,
                        "reason": reason,
                        "ended_at": ended_at,
                        "started_at": started,
                        "not_before": not_before,
                        "current": current,
                    }
                )
                attempt_updates.append(
                    {
                        "aid": rep.attempt_id,
                        "state": rep.outcome if rep.outcome in _OUTCOME_EVENTS else "failed",
                        "ended_at": now,
                        "started_at": row.started_at or rep.started_at or now,
                        "exit_code": rep.exit_code,
                        "reason": rep.reason,
                        "resources": dict(rep.resources),
                        "result": rep.result,
                    }
                )
                if rep.outputs:
                    kept.append((rep.attempt_id, job.run_id, rep.outputs))
                if new is JobState.PASSED and publishes(rep.result):
                    shared_runs.add(job.run_id)
                by_run[job.run_id].append((job.name, state, new))
                if new.ended and job.needed:
                    unblock[job.run_id].add(job.name)
                queued = (job.id,) if new is JobState.QUEUED else ()
                seen[rep.attempt_id] = Ended(
                    rep.attempt_id, job.id, job.run_id, new, queued, not_before=not_before
                )
                out.append(seen[rep.attempt_id])
            if job_updates:
                # rows were locked (PostgreSQL) or the store is ours alone (SQLite): no guard misses
                self._end_job.many(conn, job_updates)
                self._end_attempt.many(conn, attempt_updates)
                record_outputs(conn, self.db, kept)
            for run_id in sorted(shared_runs):
                self._mark_shared.execute(conn, {"rid": run_id})
            settled = {
                run_id: settle(
                    conn, self.db, run_id, changes, unblock_names=unblock.get(run_id, set())
                )
                for run_id, changes in sorted(by_run.items())
            }
        return _with_settled(out, settled)

    def release(self, items: Sequence[tuple[int, str]], reason: str) -> list[int]:
        """A worker gives leases back unfinished (forced drain): the jobs go back to the queue."""
        return self._requeue(items, reason, Event.RELEASE)

    def expire(self, limit: int = 500) -> list[Ended]:
        """Leases past their expiry: requeue the job, or end it `lost` when retries are spent."""
        with self.db.write() as conn:
            now = self.db.now(conn)
            rows = conn.execute(
                select(attempts.c.id, attempts.c.lease_token)
                .where(attempts.c.state.in_(ACTIVE_STATES), attempts.c.lease_expires_at < now)
                .order_by(attempts.c.lease_expires_at)
                .limit(limit)
            ).all()
        if not rows:
            return []
        return self._end_unfinished(
            [(r.id, r.lease_token) for r in rows],
            "lease expired: the worker stopped reporting",
            None,
        )

    def _requeue(self, items: Sequence[tuple[int, str]], reason: str, event: Event) -> list[int]:
        ended = self._end_unfinished(items, reason, event)
        return [e.job_id for e in ended if e.state is JobState.QUEUED]

    def _end_unfinished(
        self, items: Sequence[tuple[int, str]], reason: str, event: Event | None
    ) -> list[Ended]:
        out: list[Ended] = []
        with self.db.write() as conn:
            now = self.db.now(conn)
            held, _ = self._held(conn, items)
            self._lock_jobs(conn, held)
            by_run: dict[int, list[tuple[str, JobState, JobState]]] = defaultdict(list)
            for aid, row in held.items():
                if row.state not in ACTIVE:
                    continue
                job = conn.execute(
                    select(
                        jobs.c.id,
                        jobs.c.run_id,
                        jobs.c.name,
                        jobs.c.state,
                        jobs.c.tries,
                        jobs.c.retries,
                        jobs.c.current_attempt_id,
                    ).where(jobs.c.id == row.job_id)
                ).one()
                state = JobState(job.state)
                values: dict[str, Any] = {"reason": reason, "current_attempt_id": None}
                if event is Event.RELEASE:
                    ev = Event.RELEASE
                    values["tries"] = jobs.c.tries - 1  # a released lease was not a real try
                elif job.tries <= job.retries:
                    ev = Event.EXPIRE
                    values["reason"] = f"{reason}; retry {job.tries} of {job.retries}"
                else:
                    ev = Event.EXPIRE_LOST
                attempt_state = "released" if ev is Event.RELEASE else "expired"
                conn.execute(
                    update(attempts)
                    .where(attempts.c.id == aid, attempts.c.state.in_(ACTIVE))
                    .values(state=attempt_state, ended_at=now, reason=reason)
                )
                if job.current_attempt_id != aid or not state.active:
                    continue
                new = move(conn, self.db, job.id, state, ev, **values)
                if new is None:
                    continue
                by_run[job.run_id].append((job.name, state, new))
                out.append(Ended(aid, job.id, job.run_id, new))
            settled = {
                run_id: settle(conn, self.db, run_id, changes)
                for run_id, changes in sorted(by_run.items())
            }
        ended = _with_settled(out, settled)
        return [e for e in ended if isinstance(e, Ended)]

    def end_held_by(self, worker_id: int, reason: str) -> list[Ended]:
        """End every lease a worker holds as if it had expired (the job is retried, or lost
        once its retries are spent): the worker that held them is gone."""
        return self._end_unfinished(self.active(worker_id), reason, None)

    def active(self, worker_id: int) -> list[tuple[int, str]]:
        """The (attempt, token) pairs a worker holds now."""
        with self.db.read() as conn:
            return [
                (r.id, r.lease_token)
                for r in conn.execute(
                    select(attempts.c.id, attempts.c.lease_token).where(
                        and_(
                            attempts.c.worker_id == worker_id,
                            attempts.c.state.in_(ACTIVE_STATES),
                        )
                    )
                ).all()
            ]

    def token_of(self, attempt_id: int) -> tuple[str, int, str] | None:
        """(token, job id, state) of an attempt, for fencing log writes."""
        with self.db.read() as conn:
            row = conn.execute(
                select(attempts.c.lease_token, attempts.c.job_id, attempts.c.state).where(
                    attempts.c.id == attempt_id
                )
            ).one_or_none()
        return None if row is None else (row.lease_token, row.job_id, row.state)
