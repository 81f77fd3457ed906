"""Dataflow in the store: what attempts produced, what the jobs that take it resolve it to,
and which objects a worker may read or write for the attempts it holds."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, select

from corral.store.engine import Database, insert_ignoring_duplicates
from corral.store.prepared import Prepared
from corral.store.tables import (
    ACTIVE_STATES,
    attempt_outputs,
    attempts,
    jobs,
    object_grants,
    objects,
    runs,
)

log = logging.getLogger("corral.store")

Ref = tuple[str, str]  # (producer job, output name): "stdout" or a path

_RESULTS = Prepared(
    select(jobs.c.name, jobs.c.instance, jobs.c.state, jobs.c.reason, attempts.c.result)
    .select_from(jobs)
    .outerjoin(attempts, attempts.c.id == jobs.c.current_attempt_id)
    .where(jobs.c.run_id == bindparam("rid"))
    .order_by(jobs.c.position, jobs.c.id)
)


def record_outputs(
    conn: Connection,
    db: Database,
    ended: Sequence[tuple[int, int, Sequence[tuple[str, str, int]]]],
) -> None:
    """Keep what ended attempts produced, in the transaction that records their ends.

    `ended` holds (attempt id, run id, [(name, sha256, size)]). An output counts only if its
    object is stored and granted to the run's project already: uploads grant it, so a worker
    cannot claim someone else's object by naming its hash. Grants are written again (a
    no-op when they exist) so that the rule holds inside this one transaction.
    """
    ended = [e for e in ended if e[2]]
    if not ended:
        return
    run_ids = sorted({run_id for _, run_id, _ in ended})
    project_of = dict(
        conn.execute(select(runs.c.id, runs.c.project_id).where(runs.c.id.in_(run_ids))).all()
    )
    shas = sorted({sha for _, _, outs in ended for _, sha, _ in outs})
    granted = {
        (r.sha256, r.project_id): int(r.size)
        for r in conn.execute(
            select(object_grants.c.sha256, object_grants.c.project_id, objects.c.size)
            .join(objects, objects.c.sha256 == object_grants.c.sha256)
            .where(object_grants.c.sha256.in_(shas))
        ).all()
    }
    now = db.now(conn)
    rows: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    for attempt_id, run_id, outs in ended:
        project_id = project_of[run_id]
        for name, sha, _size in outs:
            size = granted.get((sha, project_id))
            if size is None:
                log.warning(
                    "attempt %s reported output %r as sha256:%s, which its project does not "
                    "hold: not kept",
                    attempt_id,
                    name,
                    sha,
                )
                continue
            rows.append({"attempt_id": attempt_id, "name": name, "sha256": sha, "size": size})
            grants.append({"sha256": sha, "project_id": project_id, "created_at": now})
    if rows:
        conn.execute(insert_ignoring_duplicates(db, attempt_outputs), rows)
        conn.execute(insert_ignoring_duplicates(db, object_grants), grants)


class Dataflow:
    def __init__(self, db: Database) -> None:
        self.db = db

    def resolve(self, run_id: int, refs: Iterable[Ref]) -> dict[Ref, tuple[str, int] | None]:
        """What each (job, output) of a run is now: the object its current passed attempt
        produced under that name (sha256, size), or None when it produced none."""
        wanted = set(refs)
        if not wanted:
            return {}
        names = sorted({job for job, _ in wanted})
        with self.db.read() as conn:
            found = conn.execute(
                select(
                    jobs.c.name,
                    attempt_outputs.c.name.label("output"),
                    attempt_outputs.c.sha256,
                    attempt_outputs.c.size,
                )
                .join(attempt_outputs, attempt_outputs.c.attempt_id == jobs.c.current_attempt_id)
                .where(
                    jobs.c.run_id == run_id,
                    jobs.c.name.in_(names),
                    jobs.c.state == "passed",
                    attempt_outputs.c.name.in_(sorted({out for _, out in wanted})),
                )
            ).all()
        have = {(r.name, r.output): (r.sha256, int(r.size)) for r in found}
        return {ref: have.get(ref) for ref in wanted}

    def results(self, run_id: int) -> list[tuple[str, str, str, str, Any]]:
        """Every job of a run, in spec order, as (name, instance, state, reason, the result
        of its current or last attempt): what `Client.map` reads in one request."""
        with self.db.read() as conn:
            found = _RESULTS.all(conn, {"rid": run_id})
        return [(r.name, r.instance, r.state, r.reason, r.result) for r in found]

    def attempt_project(self, worker_id: int, attempt_id: int) -> int | None:
        """The project of the run of a live attempt that this worker holds; None otherwise."""
        with self.db.read() as conn:
            row = conn.execute(
                select(runs.c.project_id)
                .select_from(attempts)
                .join(jobs, jobs.c.id == attempts.c.job_id)
                .join(runs, runs.c.id == jobs.c.run_id)
                .where(
                    attempts.c.id == attempt_id,
                    attempts.c.worker_id == worker_id,
                    attempts.c.state.in_(ACTIVE_STATES),
                    jobs.c.current_attempt_id == attempt_id,
                )
            ).one_or_none()
        return None if row is None else int(row.project_id)

    def worker_may_read(self, worker_id: int, sha256: str) -> bool:
        """Whether the object is an input of an attempt the worker holds now (as named in
        the spec, or as what a producer job passed with)."""
        with self.db.read() as conn:
            held = conn.execute(
                select(jobs.c.run_id, jobs.c.payload)
                .select_from(attempts)
                .join(jobs, jobs.c.id == attempts.c.job_id)
                .where(
                    attempts.c.worker_id == worker_id,
                    attempts.c.state.in_(ACTIVE_STATES),
                    jobs.c.current_attempt_id == attempts.c.id,
                )
            ).all()
        refs: dict[int, set[Ref]] = {}
        for row in held:
            for item in _inputs(row.payload):
                if item.get("sha256") == sha256:
                    return True
                if item.get("job"):
                    refs.setdefault(int(row.run_id), set()).add(
                        (str(item["job"]), _output_name(item))
                    )
        for run_id, wanted in refs.items():
            resolved = self.resolve(run_id, wanted)
            if any(v is not None and v[0] == sha256 for v in resolved.values()):
                return True
        return False


def _inputs(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = payload.get("inputs") if isinstance(payload, Mapping) else None
    return [i for i in found or [] if isinstance(i, Mapping)]


def _output_name(item: Mapping[str, Any]) -> str:
    return str(item.get("output") or "")


def input_refs(payload: Mapping[str, Any]) -> list[tuple[str, str | None, Ref | None]]:
    """A job's inputs as (name, sha256 named in the spec, (job, output) taken from a job)."""
    out: list[tuple[str, str | None, Ref | None]] = []
    for item in _inputs(payload):
        if item.get("sha256"):
            out.append((str(item["name"]), str(item["sha256"]), None))
        else:
            out.append((str(item["name"]), None, (str(item["job"]), _output_name(item))))
    return out
