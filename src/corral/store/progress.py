"""How a run moves on when its jobs change state: guarded transitions, readiness, run end.

Every job state change in the store goes through `move`, so the one state machine in
domain/states.py decides what is allowed, and the UPDATE is guarded by the state it
expects: a concurrent change makes the guard miss instead of overwriting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select, update

from corral.domain.states import ENDED, FAILURES, Event, JobState, RunState, next_state, run_state
from corral.scheduler.graph import Node, readiness
from corral.store.engine import Database
from corral.store.prepared import Prepared
from corral.store.run_limits import stop_at_max_failures
from corral.store.tables import job_needs, jobs, runs


def move(
    conn: Connection,
    db: Database,
    job_id: int,
    state: JobState,
    event: Event,
    **values: Any,
) -> JobState | None:
    """Apply `event` to a job believed to be in `state`; None if it was not (someone else won)."""
    target = next_state(state, event)
    if target.ended and "ended_at" not in values:
        values["ended_at"] = db.now_sql()
    result = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == state.value)
        .values(state=target.value, **values)
    )
    if result.rowcount != 1:
        return None
    return target


class Settled(NamedTuple):
    queued: list[int]  # jobs newly queued
    ended: bool  # the run has ended with these changes (its waiters may stop waiting)


def settle(
    conn: Connection,
    db: Database,
    run_id: int,
    changes: Sequence[tuple[str, JobState, JobState]],
    recheck: Iterable[str] = (),
    unblock_names: set[str] | None = None,
) -> Settled:
    """Follow up job changes in one run: unblock or skip dependents, count ends, end the run.

    `changes` holds (job name, old state, new state); `recheck` names ended jobs whose
    dependents should be looked at again (after a rerun); `unblock_names`, when given, limits
    the look at dependents to those names (the caller knows which ended jobs are needed).
    """
    ended_names: set[str] = set(recheck)
    delta = 0
    for name, old, new in changes:
        if new.ended and not old.ended:
            delta -= 1
            ended_names.add(name)
        elif old.ended and not new.ended:
            delta += 1
    if unblock_names is not None:
        ended_names = set(unblock_names) | set(recheck)
    # before unblocking: a run stopped by its failures makes none of its waiting jobs ready
    delta -= stop_at_max_failures(conn, db, run_id, changes)
    queued: list[int] = []
    if ended_names:
        queued, more = _unblock(conn, db, run_id, ended_names)
        delta += more
    row = _ADD_PENDING.one(conn, {"rid": run_id, "d": delta})
    if row.pending > 0:
        if RunState(row.state).ended:
            # a rerun brings an ended run back to life
            conn.execute(
                update(runs).where(runs.c.id == run_id).values(state="running", ended_at=None)
            )
        return Settled(queued, False)
    _end_run(conn, db, run_id, row.state)
    return Settled(queued, True)


def _unblock(conn: Connection, db: Database, run_id: int, ended: set[str]) -> tuple[list[int], int]:
    """Decide blocked jobs that need one of `ended`; cascades through skips. Returns (queued, delta)."""
    queued: list[int] = []
    delta = 0
    frontier = set(ended)
    while frontier:
        candidates = conn.execute(
            select(jobs.c.id, jobs.c.name, jobs.c.needs, jobs.c.when).where(
                jobs.c.id.in_(
                    select(job_needs.c.job_id).where(
                        job_needs.c.run_id == run_id, job_needs.c.need.in_(sorted(frontier))
                    )
                ),
                jobs.c.state == JobState.BLOCKED.value,
            )
        ).all()
        if not candidates:
            break
        wanted = {n for c in candidates for n in c.needs}
        states = conn.execute(
            select(jobs.c.id, jobs.c.name, jobs.c.state, jobs.c.when).where(
                jobs.c.run_id == run_id, jobs.c.name.in_(sorted(wanted))
            )
        ).all()
        # a need's `when` tells a skip that passes a failure on from a hook that did not fire
        nodes = [Node(s.id, s.name, JobState(s.state), (), s.when) for s in states]
        nodes += [Node(c.id, c.name, JobState.BLOCKED, tuple(c.needs), c.when) for c in candidates]
        frontier = set()
        names = {c.id: c.name for c in candidates}
        for job_id, event in readiness(nodes):
            values: dict[str, Any] = {}
            if event is Event.SKIP:
                values["reason"] = "skipped: its `when` did not match how its needs ended"
            new = move(conn, db, job_id, JobState.BLOCKED, event, **values)
            if new is JobState.QUEUED:
                queued.append(job_id)
            elif new is JobState.SKIPPED:
                delta -= 1
                frontier.add(names[job_id])
    return queued, delta


_ADD_PENDING = Prepared(
    update(runs)
    .where(runs.c.id == bindparam("rid"))
    .values(pending=runs.c.pending + bindparam("d"))
    .returning(runs.c.pending, runs.c.state)
)


_BAD_ENDS = Prepared(
    select(jobs.c.state)
    .where(
        jobs.c.run_id == bindparam("rid"),
        jobs.c.state.in_([*(s.value for s in FAILURES), JobState.CANCELED.value]),
    )
    .distinct()
)


_ENDED = Prepared(
    update(runs)
    .where(runs.c.id == bindparam("rid"))
    .values(state=bindparam("state"), ended_at=bindparam("now"))
)


def _end_run(conn: Connection, db: Database, run_id: int, current: str) -> None:
    # every job has ended: only failures and cancels decide the outcome
    bad = [JobState(r.state) for r in _BAD_ENDS.all(conn, {"rid": run_id})]
    final = run_state(bad or [JobState.PASSED])
    if final.value != current:
        _ENDED.execute(conn, {"rid": run_id, "state": final.value, "now": db.now(conn)})


_COUNTS = Prepared(
    select(jobs.c.run_id, jobs.c.state, func.count())
    .where(jobs.c.run_id.in_(bindparam("ids", expanding=True)))
    .group_by(jobs.c.run_id, jobs.c.state)
)
_STARTED = Prepared(
    update(runs)
    .where(runs.c.id.in_(bindparam("ids", expanding=True)), runs.c.state == RunState.QUEUED.value)
    .values(state=RunState.RUNNING.value, started_at=bindparam("now"))
)


def job_counts(conn: Connection, run_ids: Iterable[int]) -> dict[int, Counter[str]]:
    ids = list(run_ids)
    out: dict[int, Counter[str]] = {i: Counter() for i in ids}
    if not ids:
        return out
    rows = _COUNTS.all(conn, {"ids": ids})
    for run_id, state, n in rows:
        out[run_id][state] = n
    return out


def mark_started(conn: Connection, db: Database, run_ids: Iterable[int]) -> None:
    """The first lease of a run makes it running."""
    ids = sorted(set(run_ids))
    if ids:
        _STARTED.execute(conn, {"ids": ids, "now": db.now(conn)})


__all__ = ["ENDED", "Settled", "job_counts", "mark_started", "move", "settle"]
