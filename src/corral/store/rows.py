"""Rows to records: the store hands out frozen dataclasses, never SQLAlchemy rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.domain.models import Attempt, Job, Run, Worker
from corral.domain.states import JobState, RunState


def run(row: Any, project: str, counts: Mapping[str, int] | None = None) -> Run:
    return Run(
        id=row.id,
        project=project,
        name=row.name,
        schedule=row.schedule,
        state=RunState(row.state),
        params=row.params,
        submitted_by=row.submitted_by,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        counts=dict(counts or {}),
        max_parallel=row.max_parallel,
        max_failures=row.max_failures,
    )


def job(row: Any) -> Job:
    return Job(
        id=row.id,
        run_id=row.run_id,
        name=row.name,
        instance=row.instance,
        kind=row.kind,
        payload=row.payload,
        selector=row.selector,
        needs=tuple(row.needs),
        when=row.when,
        timeout=row.timeout,
        retries=row.retries,
        state=JobState(row.state),
        attempts=row.attempts,
        reason=row.reason,
        exit_code=row.exit_code,
        worker=row.worker_name,
        not_before=row.not_before,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )


def attempt(row: Any) -> Attempt:
    return Attempt(
        id=row.id,
        job_id=row.job_id,
        number=row.number,
        worker=row.worker_name,
        state=row.state,
        leased_at=row.leased_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        exit_code=row.exit_code,
        reason=row.reason,
        resources=row.resources,
        log_bytes=row.log_bytes,
        result=row.result,
    )


def worker(row: Any, busy: int = 0) -> Worker:
    return Worker(
        id=row.id,
        name=row.name,
        labels=row.labels,
        slots=row.slots,
        allow=tuple(row.allow),
        draining=bool(row.draining),
        last_seen=row.last_seen,
        joined_at=row.joined_at,
        busy=busy,
        local=bool(row.local),
    )
