"""The lease protocol in the store: lease, start, heartbeat, finish, release, expire.

Every attempt carries a random token; only the job's current attempt with its token may
start, heartbeat, log or finish (fencing). Expiry is measured by the store's clock.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, insert, not_, or_, select, update

from corral.domain.models import Lease, Worker
from corral.domain.states import Event, JobState, next_state
from corral.errors import LeaseLost
from corral.store.engine import Database
from corral.store.progress import mark_started, move, settle
from corral.store.tables import attempts, job_selectors, jobs, runs, workers

ACTIVE = ("leased", "running")
_OUTCOME_EVENTS = {"passed": Event.PASS, "failed": Event.FAIL, "timed_out": Event.TIME_OUT}


@dataclass(frozen=True)
class Report:
    """What a worker says when an attempt ends."""

    attempt_id: int
    token: str
    outcome: str  # passed | failed | timed_out
    exit_code: int | None
    reason: str
    started_at: float | None = None
    resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Ended:
    """What the store did with an ended attempt: the job's new state and the run touched."""

    attempt_id: int
    job_id: int
    run_id: int
    state: JobState
    queued: tuple[int, ...] = ()  # jobs this one made ready (or a retry of itself)


def backoff(tries: int, base: float) -> float:
    """Seconds before retry number `tries`: doubling from `base`, at most 5 minutes."""
    return float(min(base * 2 ** max(tries - 1, 0), 300.0))


class Leases:
    def __init__(self, db: Database, retry_backoff: float = 1.0) -> None:
        self.db = db
        self.retry_backoff = retry_backoff

    def lease(self, worker: Worker, max_jobs: int, ttl: float) -> list[Lease]:
        """Hand up to `max_jobs` queued jobs that match the worker to it, in one transaction."""
        if max_jobs <= 0 or worker.draining:
            return []
        pairs = [f"{k}={v}" for k, v in worker.labels.items()]
        foreign_label = exists().where(
            job_selectors.c.job_id == jobs.c.id,
            not_(job_selectors.c.pair.in_(pairs)) if pairs else True,
        )
        with self.db.write() as conn:
            now = self.db.now(conn)
            picked = conn.execute(
                select(
                    jobs.c.id,
                    jobs.c.run_id,
                    jobs.c.name,
                    jobs.c.instance,
                    jobs.c.payload,
                    jobs.c.timeout,
                    jobs.c.attempts,
                )
                .where(
                    jobs.c.state == JobState.QUEUED.value,
                    jobs.c.not_before <= now,
                    or_(jobs.c.target_worker_id.is_(None), jobs.c.target_worker_id == worker.id),
                    jobs.c.kind.in_(list(worker.allow)),
                    or_(jobs.c.selector_size == 0, not_(foreign_label)),
                )
                .order_by(jobs.c.id)
                .limit(max_jobs)
                .with_for_update(**self.db.skip_locked())
            ).all()
            if not picked:
                conn.execute(update(workers).where(workers.c.id == worker.id).values(last_seen=now))
                return []
            tokens = [secrets.token_hex(16) for _ in picked]
            attempt_ids = (
                conn.execute(
                    insert(attempts).returning(attempts.c.id, sort_by_parameter_order=True),
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
                        for row, token in zip(picked, tokens, strict=True)
                    ],
                )
                .scalars()
                .all()
            )
            leased = next_state(JobState.QUEUED, Event.LEASE).value
            conn.execute(
                update(jobs)
                .where(jobs.c.id == bindparam("jid"), jobs.c.state == JobState.QUEUED.value)
                .values(
                    state=leased,
                    current_attempt_id=bindparam("aid"),
                    attempts=jobs.c.attempts + 1,
                    tries=jobs.c.tries + 1,
                    worker_name=worker.name,
                    reason="",
                ),
                [{"jid": r.id, "aid": a} for r, a in zip(picked, attempt_ids, strict=True)],
            )
            run_ids = {r.run_id for r in picked}
            mark_started(conn, self.db, run_ids)
            names = dict(
                conn.execute(select(runs.c.id, runs.c.name).where(runs.c.id.in_(run_ids))).all()
            )
            conn.execute(update(workers).where(workers.c.id == worker.id).values(last_seen=now))
            return [
                Lease(
                    attempt_id=a,
                    token=t,
                    job_id=r.id,
                    run_id=r.run_id,
                    run_name=names[r.run_id],
                    job_name=r.name,
                    instance=r.instance,
                    number=r.attempts + 1,
                    payload=r.payload,
                    timeout=r.timeout,
                    ttl=ttl,
                )
                for r, a, t in zip(picked, attempt_ids, tokens, strict=True)
            ]

    def _held(
        self, conn: Connection, items: Sequence[tuple[int, str]]
    ) -> tuple[dict[int, Any], list[int]]:
        """Split (attempt, token) pairs into the rows still held and the ids that are not."""
        ids = [a for a, _ in items]
        found = {
            r.id: r
            for r in conn.execute(
                select(
                    attempts.c.id,
                    attempts.c.lease_token,
                    attempts.c.state,
                    attempts.c.job_id,
                    attempts.c.started_at,
                ).where(attempts.c.id.in_(ids))
            ).all()
        }
        held: dict[int, Any] = {}
        lost: list[int] = []
        for aid, token in items:
            row = found.get(aid)
            if row is not None and secrets.compare_digest(row.lease_token, token):
                held[aid] = row
            else:
                lost.append(aid)
        return held, lost

    def start(self, items: Sequence[tuple[int, str, float]]) -> list[int]:
        """Attempts whose process started (attempt, token, when). Returns the ids not held."""
        with self.db.write() as conn:
            held, lost = self._held(conn, [(a, t) for a, t, _ in items])
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
        with self.db.write() as conn:
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
        """Record ended attempts: exactly once per attempt; the same report twice is a no-op."""
        out: list[Ended | LeaseLost] = []
        with self.db.write() as conn:
            now = self.db.now(conn)
            held, _lost = self._held(conn, [(r.attempt_id, r.token) for r in reports])
            by_run: dict[int, list[tuple[str, JobState, JobState]]] = defaultdict(list)
            pending: list[tuple[int, Ended]] = []
            for rep in reports:
                row = held.get(rep.attempt_id)
                if row is None:
                    out.append(LeaseLost(f"attempt {rep.attempt_id}: not the current lease"))
                    continue
                job = conn.execute(
                    select(
                        jobs.c.id,
                        jobs.c.run_id,
                        jobs.c.name,
                        jobs.c.state,
                        jobs.c.tries,
                        jobs.c.retries,
                        jobs.c.attempts,
                        jobs.c.current_attempt_id,
                        jobs.c.started_at,
                    ).where(jobs.c.id == row.job_id)
                ).one()
                if row.state not in ACTIVE:
                    if row.state in _OUTCOME_EVENTS or row.state == "queued":
                        # the same finish again: already recorded, nothing changes
                        out.append(Ended(rep.attempt_id, job.id, job.run_id, JobState(job.state)))
                    else:
                        out.append(LeaseLost(f"attempt {rep.attempt_id}: lease {row.state}"))
                    continue
                state = JobState(job.state)
                if job.current_attempt_id != rep.attempt_id or not state.active:
                    out.append(LeaseLost(f"attempt {rep.attempt_id}: not the current lease"))
                    continue
                event = _OUTCOME_EVENTS.get(rep.outcome, Event.FAIL)
                values: dict[str, Any] = {"exit_code": rep.exit_code, "reason": rep.reason}
                if event is not Event.PASS and job.tries <= job.retries:
                    event = Event.RETRY
                    delay = backoff(job.tries, self.retry_backoff)
                    values["not_before"] = now + delay
                    values["reason"] = (
                        f"{rep.reason}; retry {job.tries} of {job.retries} in {delay:.0f}s"
                    )
                    values["current_attempt_id"] = None
                if job.started_at is None:
                    values["started_at"] = rep.started_at or row.started_at or now
                new = move(conn, self.db, job.id, state, event, **values)
                if new is None:
                    out.append(LeaseLost(f"attempt {rep.attempt_id}: the job changed meanwhile"))
                    continue
                conn.execute(
                    update(attempts)
                    .where(attempts.c.id == rep.attempt_id)
                    .values(
                        state=rep.outcome if rep.outcome in _OUTCOME_EVENTS else "failed",
                        ended_at=now,
                        started_at=row.started_at or rep.started_at or now,
                        exit_code=rep.exit_code,
                        reason=rep.reason,
                        resources=dict(rep.resources),
                    )
                )
                by_run[job.run_id].append((job.name, state, new))
                queued = (job.id,) if new is JobState.QUEUED else ()
                pending.append((len(out), Ended(rep.attempt_id, job.id, job.run_id, new, queued)))
                out.append(pending[-1][1])
            for run_id, changes in by_run.items():
                more = settle(conn, self.db, run_id, changes)
                if more:
                    for i, ended in pending:
                        if ended.run_id == run_id:
                            out[i] = Ended(
                                ended.attempt_id,
                                ended.job_id,
                                run_id,
                                ended.state,
                                (*ended.queued, *more),
                            )
                            break
        return out

    def release(self, items: Sequence[tuple[int, str]], reason: str) -> list[int]:
        """A worker gives leases back unfinished (forced drain): the jobs go back to the queue."""
        return self._requeue(items, reason, Event.RELEASE)

    def expire(self, limit: int = 500) -> list[Ended]:
        """Leases past their expiry: requeue the job, or end it `lost` when retries are spent."""
        with self.db.write() as conn:
            now = self.db.now(conn)
            rows = conn.execute(
                select(attempts.c.id, attempts.c.lease_token)
                .where(attempts.c.state.in_(ACTIVE), attempts.c.lease_expires_at < now)
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
            for run_id, changes in by_run.items():
                settle(conn, self.db, run_id, changes)
        return out

    def active(self, worker_id: int) -> list[tuple[int, str]]:
        """The (attempt, token) pairs a worker holds now."""
        with self.db.read() as conn:
            return [
                (r.id, r.lease_token)
                for r in conn.execute(
                    select(attempts.c.id, attempts.c.lease_token).where(
                        and_(attempts.c.worker_id == worker_id, attempts.c.state.in_(ACTIVE))
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
