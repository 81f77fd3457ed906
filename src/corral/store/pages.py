"""Reads for the dashboard's pages: the jobs of several runs, attempt outputs, workers' jobs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import select

from corral.domain.models import Job
from corral.store import rows
from corral.store.engine import Database
from corral.store.tables import ACTIVE_STATES, attempt_outputs, attempts, jobs, runs


class Output(NamedTuple):
    """A file (or stdout) an attempt produced, kept as an object."""

    job_id: int
    attempt: int  # the attempt's number
    name: str
    sha256: str
    size: int


class Busy(NamedTuple):
    """A job a worker holds now."""

    worker_id: int
    project_id: int
    run_id: int
    name: str
    instance: str
    state: str

    @property
    def label(self) -> str:
        return f"{self.name}[{self.instance}]" if self.instance else self.name


class Pages:
    def __init__(self, db: Database) -> None:
        self.db = db

    def jobs_of(self, run_ids: Sequence[int]) -> dict[int, list[Job]]:
        """The jobs of each run, in spec order (one index range per run: run_id, position)."""
        out: dict[int, list[Job]] = {r: [] for r in run_ids}
        if not run_ids:
            return out
        with self.db.read() as conn:
            found = conn.execute(
                select(jobs)
                .where(jobs.c.run_id.in_(list(run_ids)))
                .order_by(jobs.c.run_id, jobs.c.position, jobs.c.id)
            ).all()
        for r in found:
            out[r.run_id].append(rows.job(r))
        return out

    def outputs(self, run_id: int, job_id: int | None = None) -> list[Output]:
        """Every output of every attempt of a run's jobs (or one job's), oldest attempt first."""
        with self.db.read() as conn:
            q = (
                select(
                    attempts.c.job_id,
                    attempts.c.number,
                    attempt_outputs.c.name,
                    attempt_outputs.c.sha256,
                    attempt_outputs.c.size,
                )
                .join(attempts, attempts.c.id == attempt_outputs.c.attempt_id)
                .join(jobs, jobs.c.id == attempts.c.job_id)
                .where(jobs.c.run_id == run_id)
                .order_by(attempts.c.job_id, attempts.c.number, attempt_outputs.c.name)
            )
            if job_id is not None:
                q = q.where(jobs.c.id == job_id)
            found = conn.execute(q).all()
        return [Output(r.job_id, r.number, r.name, r.sha256, int(r.size)) for r in found]

    def busy(self) -> list[Busy]:
        """The jobs workers hold now (the partial index on live attempts keeps this small)."""
        with self.db.read() as conn:
            found = conn.execute(
                select(
                    attempts.c.worker_id,
                    runs.c.project_id,
                    jobs.c.run_id,
                    jobs.c.name,
                    jobs.c.instance,
                    attempts.c.state,
                )
                .join(jobs, jobs.c.id == attempts.c.job_id)
                .join(runs, runs.c.id == jobs.c.run_id)
                .where(attempts.c.state.in_(ACTIVE_STATES))
                .order_by(attempts.c.id)
            ).all()
        return [Busy(*r) for r in found]

    def names(self, project_ids: Sequence[int] | None, limit: int = 200) -> list[str]:
        """Names of the newest runs (at most `limit` runs are read), newest first."""
        with self.db.read() as conn:
            q = select(runs.c.name).order_by(runs.c.id.desc()).limit(limit)
            if project_ids is not None:
                q = q.where(runs.c.project_id.in_(list(project_ids)))
            found = conn.execute(q).scalars().all()
        return list(dict.fromkeys(found))


def by_job(outputs: Sequence[Output]) -> dict[int, list[Output]]:
    """Outputs grouped by job."""
    out: dict[int, list[Output]] = defaultdict(list)
    for o in outputs:
        out[o.job_id].append(o)
    return out
