"""Runs and their jobs in the store: submit, read, cancel, rerun."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from corral.domain.models import Attempt, Job, Project, Run
from corral.domain.runspec import RunSpec
from corral.domain.states import ENDED, FAILURES, Event, JobState, RunState
from corral.errors import Conflict, NotFound
from corral.scheduler.graph import Node, downstream
from corral.scheduler.placement import Placement
from corral.store import rows
from corral.store.engine import Database
from corral.store.prepared import Prepared
from corral.store.progress import job_counts, move, settle
from corral.store.tables import attempts, job_needs, job_selectors, jobs, projects, runs

_RUN_COLUMNS = (
    "project_id",
    "name",
    "schedule",
    "params",
    "state",
    "pending",
    "submitted_by",
    "created_at",
    "max_parallel",
    "max_failures",
)
_JOB_COLUMNS = (
    "run_id",
    "name",
    "instance",
    "position",
    "kind",
    "payload",
    "selector",
    "selector_size",
    "target_worker_id",
    "needs",
    "needed",
    "when",
    "timeout",
    "retries",
    "state",
    "attempts",
    "tries",
    "not_before",
    "reason",
    "created_at",
)
_INSERT_RUN = Prepared(
    insert(runs).values({c: bindparam(c) for c in _RUN_COLUMNS}).returning(runs.c.id)
)
_INSERT_JOB = Prepared(insert(jobs).values({c: bindparam(c) for c in _JOB_COLUMNS}))
_JOB_IDS = Prepared(
    select(jobs.c.id, jobs.c.name, jobs.c.instance).where(jobs.c.run_id == bindparam("rid"))
)
_INSERT_SELECTOR = Prepared(
    insert(job_selectors).values(job_id=bindparam("job_id"), pair=bindparam("pair"))
)
_INSERT_NEED = Prepared(
    insert(job_needs).values(
        job_id=bindparam("job_id"), run_id=bindparam("run_id"), need=bindparam("need")
    )
)
_GET = Prepared(
    select(runs, projects.c.name.label("project"))
    .join(projects, projects.c.id == runs.c.project_id)
    .where(runs.c.id == bindparam("rid"))
)
_STATE = Prepared(select(runs.c.state).where(runs.c.id == bindparam("rid")))
_STATES = Prepared(
    select(runs.c.id, runs.c.state, runs.c.project_id).where(
        runs.c.id.in_(bindparam("rids", expanding=True))
    )
)
STATES_AT_ONCE = 500  # ids a statement reads (SQLite's variables, and PostgreSQL's plans)
_VISIBLE = runs.c.project_id.in_(bindparam("pids", expanding=True))
_BY_ID = select(runs.c.id).where(runs.c.id == bindparam("rid"))
_BY_NAME = (
    select(runs.c.id).where(runs.c.name == bindparam("name")).order_by(runs.c.id.desc()).limit(1)
)
# (by name, only some projects) -> the query finding a run's id
_FIND = {
    (False, False): Prepared(_BY_ID),
    (False, True): Prepared(_BY_ID.where(_VISIBLE)),
    (True, False): Prepared(_BY_NAME),
    (True, True): Prepared(_BY_NAME.where(_VISIBLE)),
}
_CANCELABLE = (JobState.BLOCKED, JobState.QUEUED, JobState.LEASED, JobState.RUNNING)


class Runs:
    def __init__(self, db: Database) -> None:
        self.db = db

    def submit(
        self,
        project: Project,
        spec: RunSpec,
        placements: Sequence[Placement],
        submitted_by: str,
        durable: bool = True,
    ) -> Run:
        """Store a run and its jobs in one transaction; durable when this returns, unless
        `durable=False` (the caller then makes it so before it tells anyone: `make_durable`)."""
        with self.db.write(durable) as conn:
            now = self.db.now(conn)
            run_id = _INSERT_RUN.scalar(
                conn,
                {
                    "project_id": project.id,
                    "name": spec.name,
                    "schedule": spec.schedule,
                    "params": dict(spec.params),
                    "state": RunState.QUEUED.value,
                    "pending": len(placements),
                    "submitted_by": submitted_by,
                    "created_at": now,
                    "max_parallel": spec.max_parallel,
                    "max_failures": spec.max_failures,
                },
            )
            needed = {n for p in placements for n in p.needs}
            job_rows = [
                {
                    "run_id": run_id,
                    "name": p.spec.name,
                    "instance": p.instance,
                    "position": p.position,
                    "kind": p.spec.kind,
                    "payload": p.spec.payload(),
                    "selector": dict(p.spec.selector),
                    "selector_size": len(p.spec.selector),
                    "target_worker_id": p.worker_id,
                    "needs": list(p.needs),
                    "needed": p.spec.name in needed,
                    "when": p.spec.when,
                    "timeout": p.spec.timeout,
                    "retries": p.spec.retries,
                    "state": (JobState.BLOCKED if p.needs else JobState.QUEUED).value,
                    "attempts": 0,
                    "tries": 0,
                    "not_before": 0.0,
                    "reason": "",
                    "created_at": now,
                }
                for p in placements
            ]
            # all rows in one executemany, then their ids in one read: a statement per job,
            # to get each id back as it is made, costs several times as much for a big run
            _INSERT_JOB.many(conn, job_rows)
            made = {(r.name, r.instance): r.id for r in _JOB_IDS.all(conn, {"rid": run_id})}
            ids = [made[p.spec.name, p.instance] for p in placements]
            selector_rows = [
                {"job_id": jid, "pair": f"{k}={v}"}
                for jid, p in zip(ids, placements, strict=True)
                for k, v in p.spec.selector.items()
            ]
            _INSERT_SELECTOR.many(conn, selector_rows)
            need_rows = [
                {"job_id": jid, "run_id": run_id, "need": need}
                for jid, p in zip(ids, placements, strict=True)
                for need in p.needs
            ]
            _INSERT_NEED.many(conn, need_rows)
        counts: dict[str, int] = {}
        for row in job_rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return Run(
            id=int(run_id),
            project=project.name,
            name=spec.name,
            schedule=spec.schedule,
            state=RunState.QUEUED,
            params=dict(spec.params),
            submitted_by=submitted_by,
            created_at=now,
            started_at=None,
            ended_at=None,
            counts=counts,
            max_parallel=spec.max_parallel,
            max_failures=spec.max_failures,
        )

    # -- reading -------------------------------------------------------------------------

    def get(self, run_id: int) -> Run:
        with self.db.read() as conn:
            return self._get(conn, run_id)

    def _get(self, conn: Connection, run_id: int) -> Run:
        row = _GET.first(conn, {"rid": run_id})
        if row is None:
            raise NotFound(f"no run {run_id}")
        return self._of_row(conn, row)

    def _of_row(self, conn: Connection, row: Any) -> Run:
        return rows.run(row, row.project, job_counts(conn, [row.id])[row.id])

    def state(self, run_id: int) -> RunState:
        """Just the run's state: cheap enough to ask on every wake-up of a waiter."""
        with self.db.read() as conn:
            value = _STATE.scalar(conn, {"rid": run_id})
        if value is None:
            raise NotFound(f"no run {run_id}")
        return RunState(value)

    def states(
        self, run_ids: Sequence[int], project_ids: Sequence[int] | None
    ) -> dict[int, RunState]:
        """The states of these runs, among the projects a token may see; NotFound names the
        first one that is not there (or not to be seen)."""
        found: dict[int, RunState] = {}
        wanted = list(dict.fromkeys(run_ids))
        seen = None if project_ids is None else set(project_ids)
        with self.db.read() as conn:
            for at in range(0, len(wanted), STATES_AT_ONCE):
                chunk = wanted[at : at + STATES_AT_ONCE]
                for row in _STATES.all(conn, {"rids": chunk}):
                    if seen is None or row.project_id in seen:
                        found[row.id] = RunState(row.state)
        for run_id in wanted:
            if run_id not in found:
                raise NotFound(f"no run {run_id}")
        return found

    def find(self, ref: str, project_ids: Sequence[int] | None) -> Run:
        """A run by id, or the newest run of that name, among the projects a token may see."""
        with self.db.read() as conn:
            by_name = not ref.isdigit()
            if not by_name:
                # by id: the run's own row says whose it is (one read, not two)
                row = _GET.first(conn, {"rid": int(ref)})
                if row is None or (project_ids is not None and row.project_id not in project_ids):
                    raise NotFound(f"no run {ref!r}")
                return self._of_row(conn, row)
            params: dict[str, Any] = {"name": ref}
            if project_ids is not None:
                params["pids"] = list(project_ids)
            run_id = _FIND[by_name, project_ids is not None].scalar(conn, params)
            if run_id is None:
                raise NotFound(f"no run {ref!r}")
            return self._get(conn, run_id)

    def list(
        self,
        project_ids: Sequence[int] | None,
        *,
        state: str | None = None,
        name: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> builtins.list[Run]:
        with self.db.read() as conn:
            q = (
                select(runs, projects.c.name.label("project"))
                .join(projects, projects.c.id == runs.c.project_id)
                .order_by(runs.c.id.desc())
                .limit(limit)
            )
            if project_ids is not None:
                q = q.where(runs.c.project_id.in_(project_ids))
            if state:
                q = q.where(runs.c.state == state)
            if name:
                q = q.where(runs.c.name == name)
            if before:
                q = q.where(runs.c.id < before)
            found = conn.execute(q).all()
            counts = job_counts(conn, [r.id for r in found])
            return [rows.run(r, r.project, counts[r.id]) for r in found]

    def live_counts(self) -> dict[str, int]:
        """How many jobs wait or work, by state (for metrics)."""
        with self.db.read() as conn:
            found = conn.execute(
                select(jobs.c.state, func.count())
                .where(jobs.c.state.in_(["blocked", "queued", "leased", "running"]))
                .group_by(jobs.c.state)
            ).all()
        return {state: int(n) for state, n in found}

    def jobs(self, run_id: int) -> builtins.list[Job]:
        with self.db.read() as conn:
            found = conn.execute(
                select(jobs).where(jobs.c.run_id == run_id).order_by(jobs.c.position, jobs.c.id)
            ).all()
            return [rows.job(r) for r in found]

    def job(self, run_id: int, label: str) -> Job:
        """A job by `name` or `name[instance]`; a bare name of a fanout job is ambiguous."""
        name, _, rest = label.partition("[")
        instance = rest[:-1] if rest.endswith("]") else None
        with self.db.read() as conn:
            q = select(jobs).where(jobs.c.run_id == run_id, jobs.c.name == name)
            if instance is not None:
                q = q.where(jobs.c.instance == instance)
            found = conn.execute(q.order_by(jobs.c.id)).all()
        if not found:
            raise NotFound(f"no job {label!r} in run {run_id}")
        if len(found) > 1:
            copies = ", ".join(f"{r.name}[{r.instance}]" for r in found[:5])
            raise NotFound(f"job {label!r} has a copy per worker; name one: {copies}")
        return rows.job(found[0])

    def job_by_id(self, job_id: int) -> Job:
        with self.db.read() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()
        if row is None:
            raise NotFound(f"no job {job_id}")
        return rows.job(row)

    def attempts(self, job_id: int) -> builtins.list[Attempt]:
        with self.db.read() as conn:
            found = conn.execute(
                select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.number)
            ).all()
            return [rows.attempt(r) for r in found]

    def project_id(self, run_id: int) -> int:
        with self.db.read() as conn:
            pid = conn.execute(
                select(runs.c.project_id).where(runs.c.id == run_id)
            ).scalar_one_or_none()
        if pid is None:
            raise NotFound(f"no run {run_id}")
        return int(pid)

    # -- acting --------------------------------------------------------------------------

    def cancel(self, run_id: int, job_ids: Sequence[int] | None, by: str) -> builtins.list[int]:
        """Cancel the run's unfinished jobs (or the given ones); returns the attempts to stop."""
        reason = f"canceled by {by}"
        with self.db.write() as conn:
            q = select(jobs.c.id, jobs.c.name, jobs.c.state, jobs.c.current_attempt_id).where(
                jobs.c.run_id == run_id,
                jobs.c.state.in_([s.value for s in _CANCELABLE]),
            )
            if job_ids is not None:
                q = q.where(jobs.c.id.in_(job_ids))
            q = q.order_by(jobs.c.id)  # the lock order of finish and the sweeper: no deadlocks
            changes: list[tuple[str, JobState, JobState]] = []
            stop: list[int] = []
            for row in conn.execute(q).all():
                old = JobState(row.state)
                new = move(conn, self.db, row.id, old, Event.CANCEL, reason=reason)
                if new is None:
                    continue
                changes.append((row.name, old, new))
                if old.active and row.current_attempt_id is not None:
                    stop.append(row.current_attempt_id)
            if stop:
                conn.execute(
                    update(attempts)
                    .where(attempts.c.id.in_(stop))
                    .values(state="canceled", reason=reason, ended_at=self.db.now_sql())
                )
            if changes:
                settle(conn, self.db, run_id, changes)
            return stop

    def rerun(self, run_id: int, failed_only: bool) -> int:
        """Put ended jobs back (all, or the failed ones) with everything downstream of them."""
        with self.db.write() as conn:
            found = conn.execute(
                select(jobs.c.id, jobs.c.name, jobs.c.state, jobs.c.needs, jobs.c.when).where(
                    jobs.c.run_id == run_id
                )
            ).all()
            nodes = [Node(r.id, r.name, JobState(r.state), tuple(r.needs), r.when) for r in found]
            if failed_only:
                roots = {
                    n.name for n in nodes if n.state in FAILURES or n.state is JobState.CANCELED
                }
                if not roots:
                    raise Conflict(f"run {run_id} has no failed jobs to rerun")
            else:
                roots = {n.name for n in nodes}
            names = downstream(nodes, roots)
            chosen = [n for n in nodes if n.name in names]
            if any(not n.state.ended for n in chosen):
                raise Conflict(f"run {run_id} is still running: cancel it or wait for it to end")
            changes: list[tuple[str, JobState, JobState]] = []
            for n in chosen:
                event = Event.BLOCK if n.needs else Event.RERUN
                values: dict[str, Any] = {
                    "tries": 0,
                    "reason": "",
                    "exit_code": None,
                    "not_before": 0.0,
                    "ended_at": None,
                    "started_at": None,
                    "current_attempt_id": None,
                }
                new = move(conn, self.db, n.id, n.state, event, **values)
                if new is not None:
                    changes.append((n.name, n.state, new))
            # jobs whose needs all lie outside the rerun may be ready at once
            outside = {need for n in chosen for need in n.needs if need not in names}
            settle(conn, self.db, run_id, changes, recheck=outside)
            return len(chosen)


__all__ = ["ENDED", "Runs"]
