"""Schedules that look at hosts (per-host, exclusive): the lease pick's extra rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, bindparam, exists, not_, or_, select

from corral.domain.states import RunState
from corral.store.tables import ACTIVE_STATES, attempts, jobs, runs

HOST_SCHEDULES = ("per-host", "exclusive")
LIVE_RUNS = (RunState.QUEUED.value, RunState.RUNNING.value)


def schedule_rules() -> list[ColumnElement[bool]]:
    """The lease pick's rules for runs that schedule by host (the worker is :wid).

    per-host: one job of the run at a time on a host. exclusive: that too, and while the run
    is live no other run's job starts on a host it has jobs placed on; it starts its own only
    once other runs' jobs there have ended (of two exclusive runs, the older goes first).
    """
    mine = jobs.alias("mine")
    other = runs.alias("other")
    active = (
        select(attempts.c.id)
        .join(mine, mine.c.id == attempts.c.job_id)
        .where(attempts.c.worker_id == bindparam("wid"), attempts.c.state.in_(ACTIVE_STATES))
    )
    same_run_busy = exists(active.where(mine.c.run_id == jobs.c.run_id))
    others_busy = exists(active.where(mine.c.run_id != jobs.c.run_id))
    claimed = exists(
        select(mine.c.id)
        .join(other, other.c.id == mine.c.run_id)
        .where(
            mine.c.target_worker_id == bindparam("wid"),
            other.c.schedule == "exclusive",
            other.c.state.in_(LIVE_RUNS),
            other.c.id != jobs.c.run_id,
            or_(runs.c.schedule != "exclusive", other.c.id < jobs.c.run_id),
        )
    )
    return [
        or_(runs.c.schedule.not_in(HOST_SCHEDULES), not_(same_run_busy)),
        or_(runs.c.schedule != "exclusive", not_(others_busy)),
        not_(claimed),
    ]


def one_per_host(picked: Sequence[Any]) -> list[Any]:
    """What one pick may hand one host: the SQL rules see the jobs leased before this pick,
    not the others in it, so a batch keeps one job of a per-host or exclusive run, and an
    exclusive run's job only alone."""
    kept: list[Any] = []
    for row in picked:
        if any(k.schedule == "exclusive" for k in kept):
            break
        if row.schedule in HOST_SCHEDULES and any(k.run_id == row.run_id for k in kept):
            continue
        if row.schedule == "exclusive" and kept:
            continue
        kept.append(row)
    return kept
