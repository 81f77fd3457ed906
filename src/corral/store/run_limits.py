"""A run's limits in the store: `max_parallel` in the lease pick, `max_failures` stopping the run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    bindparam,
    func,
    or_,
    select,
    update,
)

from corral.domain.states import FAILURES, Event, JobState, next_state
from corral.store.engine import Database
from corral.store.tables import ACTIVE_STATES, attempts, jobs, runs

_FAILED_STATES = sorted(s.value for s in FAILURES)
_STOPPABLE = (JobState.QUEUED, JobState.BLOCKED)


def parallel_rule() -> ColumnElement[bool]:
    """The lease pick's rule for runs with `max_parallel`: fewer of their jobs live than that.

    Live jobs are counted through the partial index on live attempts, so the count costs what
    is running now, not the size of the run. It sees the leases made before this pick; the
    pick's own batch and concurrent picks are checked by `within_parallel`.
    """
    mine = jobs.alias("par")
    busy = (
        select(func.count())
        .select_from(attempts.join(mine, mine.c.id == attempts.c.job_id))
        .where(attempts.c.state.in_(ACTIVE_STATES), mine.c.run_id == jobs.c.run_id)
        .scalar_subquery()
    )
    return or_(runs.c.max_parallel.is_(None), busy < runs.c.max_parallel)


_BUSY = (
    select(jobs.c.run_id, func.count())
    .select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))
    .where(attempts.c.state.in_(ACTIVE_STATES), jobs.c.run_id.in_(bindparam("ids", expanding=True)))
    .group_by(jobs.c.run_id)
)
# Lock order everywhere is jobs, then attempts, then runs: the pick holds its jobs already.
# SKIP LOCKED: a run whose row another transaction holds (a finish settling it) is left for the
# next ask, so a lease never waits on a run row and can take part in no deadlock.
_LOCK_RUNS: Select[Any] = (
    select(runs.c.id)
    .where(runs.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(runs.c.id)
    .with_for_update(skip_locked=True)
)


def within_parallel(conn: Connection, db: Database, picked: Sequence[Any]) -> list[Any]:
    """The picked rows that keep every run within its `max_parallel`, oldest jobs first.

    On PostgreSQL two workers may pick jobs of one run at once (each skips the other's locked
    jobs), so the run's row is locked and its live jobs counted again after the lock: the
    second lease sees the first one's jobs once it commits. On SQLite writers take turns.
    """
    limits = {r.run_id: r.max_parallel for r in picked if r.max_parallel is not None}
    if not limits:
        return list(picked)
    ids = sorted(limits)
    if db.is_postgres:
        ids = list(conn.execute(_LOCK_RUNS, {"ids": ids}).scalars())
    room = {rid: limits[rid] for rid in ids}
    if ids:
        for run_id, busy in conn.execute(_BUSY, {"ids": ids}).all():
            room[run_id] -= busy
    kept: list[Any] = []
    for row in picked:
        if row.max_parallel is not None:
            if room.get(row.run_id, 0) <= 0:
                continue
            room[row.run_id] -= 1
        kept.append(row)
    return kept


_MAX_FAILURES = select(runs.c.max_failures).where(runs.c.id == bindparam("rid"))
_FAILED = (
    select(jobs.c.name, jobs.c.instance, jobs.c.state)
    .where(jobs.c.run_id == bindparam("rid"), jobs.c.state.in_(_FAILED_STATES))
    .order_by(jobs.c.ended_at, jobs.c.id)
)
_WAITING = (
    select(jobs.c.id)
    .where(jobs.c.run_id == bindparam("rid"), jobs.c.state.in_([s.value for s in _STOPPABLE]))
    .order_by(jobs.c.id)
)
_HOW = {"failed": "failed", "timed_out": "timed out", "lost": "was lost"}


def stop_at_max_failures(
    conn: Connection, db: Database, run_id: int, changes: Sequence[tuple[str, JobState, JobState]]
) -> int:
    """Once `max_failures` of the run's jobs failed, cancel the ones still waiting (queued or
    blocked, a retry too) and say why; returns how many were canceled. Jobs already running
    finish, like the hosts of a rolling deploy that were mid-step.

    Looked at only when a job failed or went back to the queue, so passing jobs pay nothing.
    """
    if not any(
        new in FAILURES or (new is JobState.QUEUED and old.active) for _, old, new in changes
    ):
        return 0
    limit = conn.execute(_MAX_FAILURES, {"rid": run_id}).scalar_one_or_none()
    if limit is None:
        return 0
    failed = conn.execute(_FAILED, {"rid": run_id}).all()
    if len(failed) < limit:
        return 0
    culprit = failed[limit - 1]  # the failure that reached the limit
    label = f"{culprit.name}[{culprit.instance}]" if culprit.instance else culprit.name
    reason = f"stopped: max_failures {limit} reached ({label} {_HOW[culprit.state]})"
    if db.is_postgres:
        # take the row locks in id order, the order every other writer of jobs uses
        conn.execute(_WAITING.with_for_update(), {"rid": run_id}).all()
    canceled = 0
    for state in _STOPPABLE:
        canceled += conn.execute(
            update(jobs)
            .where(jobs.c.run_id == run_id, jobs.c.state == state.value)
            .values(
                state=next_state(state, Event.CANCEL).value,
                reason=reason,
                ended_at=db.now_sql(),
                current_attempt_id=None,
            )
        ).rowcount
    return canceled
