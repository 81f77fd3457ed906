"""The use cases of corral, one method each; the HTTP API, the dashboard and the local worker
all call these, so rules about who may do what and what wakes whom live here only."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from corral import events
from corral.auth import Principal
from corral.combining import Combiner
from corral.domain.labels import LabelError, check_labels, pairs
from corral.domain.models import (
    Attempt,
    Job,
    Lease,
    LogChunk,
    Project,
    Report,
    Run,
    Token,
    Upload,
    Worker,
)
from corral.domain.runspec import KINDS, NAME_RE, JobSpec, RunSpec
from corral.domain.states import JobState, RunState
from corral.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidRunSpec,
    LeaseLost,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from corral.events import Hub
from corral.objects.backend import ObjectBackend
from corral.objects.names import parse_sha256
from corral.objects.upload import ObjectUpload
from corral.registry import Registry
from corral.scheduler.placement import expand, why_waiting
from corral.secrets import Secrets
from corral.store import Store
from corral.store.dataflow import input_refs
from corral.store.leases import Ended
from corral.store.objects import ObjectRow
from corral.store.pages import Busy, Output

WORKER_NAME_RE = NAME_RE
# How long a token or project read from the store is trusted without reading it again; a
# revocation through another coordinator takes effect within this time.
CACHE_SECONDS = 2.0
# A worker whose lease came back short is not asked again until the queue moves, or this long
# has passed (a retry's back-off ends, or another coordinator's wake-up went astray).
RECHECK_EMPTY = 1.0
# How long a worker in this process, woken by a single-job run nobody waits for, may wait for
# more such runs before it leases: a stream of them then costs a lease transaction for a few
# instead of one each (as their ends are held back, QUIET_ENDS in the agent)
QUIET_LEASE = 0.01
MAX_SOLO = 100_000  # single-job runs remembered as such; more are forgotten (held back never)
MAX_OBJECT_SIZE = 5 * 1024**3

log = logging.getLogger("corral.coordinator")


@dataclass(frozen=True)
class JobView:
    """A job with what people ask about it: its attempts and why it is waiting."""

    job: Job
    attempts: Sequence[Attempt]
    waiting: str


class Coordinator:
    def __init__(
        self,
        store: Store,
        hub: Hub | None = None,
        *,
        lease_ttl: float = 30.0,
        offline_after: float = 60.0,
        registry: Registry | None = None,
        secrets: Secrets | None = None,
        objects: ObjectBackend | None = None,
        max_object_size: int = MAX_OBJECT_SIZE,
    ) -> None:
        self.store = store
        self.secrets = secrets or Secrets()
        self.blobs = objects
        self.max_object_size = max_object_size
        self.hub = hub or Hub()
        self.registry = registry or Registry()
        self.lease_ttl = lease_ttl
        self.offline_after = offline_after
        self.default_project = store.projects.ensure_default()
        self._projects: dict[str, tuple[float, Project]] = {}
        self._principals: dict[str, tuple[float, Principal]] = {}
        self._found_empty: dict[int, tuple[int, float]] = {}  # worker -> (queue version, when)
        # runs of one job submitted without `wait` and not ended yet: their ends may be held
        # back a few milliseconds by a worker here (`may_hold_end`)
        self._solo: set[int] = set()
        self._solo_lock = threading.Lock()
        # workers that joined here: their label pairs ("key=value") and the kinds they allow
        self._joined: dict[int, tuple[frozenset[str], frozenset[str]]] = {}
        self._queue_lock = threading.Lock()
        # notices of the queue whose job may wait a little to be leased (`_gather_quiet`),
        # counted with the notice itself under the queue lock
        self._quiet_notices = 0
        # On SQLite, leases and ends asked for at once share one transaction (one writer
        # anyway); PostgreSQL runs them side by side.
        self._lease_together: Combiner[tuple[int, int], list[Lease]] | None = None
        self._finish_together: Combiner[list[Report], list[Ended | LeaseLost]] | None = None
        if store.db.is_sqlite:
            self._lease_together = Combiner(self._lease_batch)
            self._finish_together = Combiner(self._finish_batch)
        self._retry_due = math.inf  # when the next retry known here ends its back-off

    # -- identity ------------------------------------------------------------------------

    def cached_principal(self, secret: str) -> Principal | None:
        """The principal of a token looked up moments ago, without touching the store."""
        hit = self._principals.get(secret)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        return None

    def authenticate(self, secret: str) -> Principal:
        """The principal of a live token; looked up at most every few seconds per token."""
        now = time.monotonic()
        hit = self._principals.get(secret)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        token = self.store.tokens.lookup(secret)
        if token is None:
            self._principals.pop(secret, None)
            raise Unauthorized("unknown or revoked token")
        project_id = None
        if token.project is not None:
            project_id = self.store.projects.get(token.project).id
        principal = Principal.of(token, project_id)
        if len(self._principals) > 10_000:
            self._principals.clear()
        self._principals[secret] = (now, principal)
        return principal

    def create_token(
        self, who: Principal, kind: str, project: str | None = None, name: str = ""
    ) -> tuple[Token, str]:
        who.require_admin()
        if kind in ("submitter", "reader"):
            if not project:
                raise InvalidInput("a project token needs a project", "project")
            project_id = self._project_for_token(project).id
            return self.store.tokens.create(kind, name or f"{project}-{kind}", project_id)
        if kind in ("admin", "join"):
            return self.store.tokens.create(kind, name or kind)
        raise InvalidInput("expected admin, submitter, reader or join", "kind")

    def _project_for_token(self, name: str) -> Project:
        if not NAME_RE.match(name):
            raise InvalidInput("expected a project name", "project")
        try:
            return self.store.projects.get(name)
        except NotFound:
            # a new project runs registered tasks only until its policy says more
            return self.store.projects.create(name, command=False, task=True, code=False)

    def list_tokens(self, who: Principal) -> list[Token]:
        who.require_admin()
        return self.store.tokens.list()

    def revoke_token(self, who: Principal, token_id: int) -> None:
        who.require_admin()
        self.store.tokens.revoke(token_id)
        self._principals.clear()  # revoked here means revoked now (other coordinators: soon)

    # -- objects -------------------------------------------------------------------------

    def begin_upload(
        self,
        who: Principal,
        sha256: str,
        project: str | None = None,
        size: int | None = None,
        attempt: int | None = None,
    ) -> tuple[Project, ObjectUpload]:
        """Check who may upload where and the declared size, before a byte is read."""
        sha256 = parse_sha256(sha256)
        if who.kind == "worker" and attempt is not None:
            # a job's output: into the project of the run whose attempt the worker holds
            project_id = self.store.dataflow.attempt_project(who.require_worker(), attempt)
            if project_id is None:
                raise LeaseLost(f"attempt {attempt}: not a live lease of this worker")
            if size is not None and size > self.max_object_size:
                raise PayloadTooLarge(
                    f"an object may be at most {self.max_object_size} bytes, not {size}"
                )
            proj = self.store.projects.by_id(project_id)
            return proj, ObjectUpload(self._blobs(), sha256, self.max_object_size)
        proj = self._project(project or who.project or "default")
        who.require_read(proj.id)
        if who.kind not in ("admin", "submitter"):
            raise Forbidden(f"a {who.kind} token cannot upload objects")
        if size is not None and size > self.max_object_size:
            raise PayloadTooLarge(
                f"an object may be at most {self.max_object_size} bytes, not {size}"
            )
        return proj, ObjectUpload(self._blobs(), sha256, self.max_object_size)

    def finish_upload(self, proj: Project, upload: ObjectUpload) -> ObjectRow:
        """Check the hash, store the blob, and only then record it and grant it to the project."""
        size = upload.finish()
        return self.store.objects.record(upload.sha256, size, proj.id)

    def find_object(self, who: Principal, sha256: str, project: str | None = None) -> ObjectRow:
        """An object the caller may read; 404 whether it is missing or only not theirs."""
        sha256 = parse_sha256(sha256)
        if who.kind == "worker":
            # a worker reads the inputs of the attempts it holds, and nothing else
            found = self.store.objects.get(sha256)
            if found is None or not self.store.dataflow.worker_may_read(
                who.require_worker(), sha256
            ):
                raise NotFound(f"no object sha256:{sha256}")
            return found
        ids = who.visible_projects()
        if project:
            proj = self._project(project)
            if ids is not None and proj.id not in ids:
                raise NotFound(f"no object sha256:{sha256}")
            ids = [proj.id]
        row = self.store.objects.readable(sha256, ids)
        if row is None:
            raise NotFound(f"no object sha256:{sha256}")
        return row

    def object_bytes(
        self, row: ObjectRow, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """The bytes of an object found with `find_object`, streamed in chunks."""
        return self._blobs().read(row.sha256, start, row.size if end is None else end)

    def _blobs(self) -> ObjectBackend:
        if self.blobs is None:
            raise Conflict("this coordinator keeps no objects")
        return self.blobs

    # -- runs ----------------------------------------------------------------------------

    def submit(
        self, who: Principal, spec: RunSpec, project: str | None = None, *, watched: bool = False
    ) -> Run:
        """Store a run. `watched`: the caller waits for its end (a submit with `wait`), so its
        end is reported at once, never held back to go out with others (`may_hold_end`), and
        on a SQLite file the run's commit is not synced here: the caller makes it durable
        before it answers (`store.db.make_durable`), most often already done by the synced
        commit of the run's end."""
        name = project or spec.project or who.project or "default"
        proj = self._project(name)
        who.require_submit(proj.id)
        refused = sorted({j.kind for j in spec.jobs if not proj.allows(j.kind)})
        if refused:
            raise Forbidden(f"project {proj.name!r} does not allow {' or '.join(refused)} jobs")
        spec = self._with_task_defaults(spec)
        if not proj.allow_network and any(j.network for j in spec.jobs):
            raise Forbidden(f"project {proj.name!r} does not allow code jobs a network")
        unknown_secrets = [
            (f"jobs.{j.name}.secrets", f"unknown secret {name!r}")
            for j in spec.jobs
            for name in self.secrets.unknown(j.secrets)
        ]
        unknown_secrets += [
            (f"jobs.{j.name}.sudo", f"unknown secret {j.sudo!r}")
            for j in spec.jobs
            if j.sudo is not None and j.sudo not in self.secrets
        ]
        if unknown_secrets:
            raise InvalidRunSpec(unknown_secrets)
        self._check_object_inputs(spec, proj)
        needs_workers = any(j.fanout == "each" for j in spec.jobs)
        workers = self.store.workers.list() if needs_workers else []
        placements = expand(spec, workers)
        # the leasers are woken while the run's commit is synced; it is durable on return,
        # unless the caller makes it so (`watched`, where the store can sync it later)
        later = watched and self.store.db.syncs_on_demand
        with contextlib.nullcontext() if later else self.store.db.sync_after():
            run = self.store.runs.submit(
                proj, spec, placements, submitted_by=who.name, durable=not later
            )
            solo = not watched and len(placements) == 1
            if solo:
                self._note_solo(run.id)  # before any worker hears of it
            self._queue_grew(spec.jobs, events.run_topic(run.id), quiet=solo)
        return run

    def _note_solo(self, run_id: int) -> None:
        with self._solo_lock:
            if len(self._solo) >= MAX_SOLO:
                self._solo.clear()  # runs that ended unseen (a restart, a cancel): start over
            self._solo.add(run_id)

    def may_hold_end(self, run_id: int) -> bool:
        """Whether a worker in this process may hold back the end of this run's job for a few
        milliseconds, to record it with others: only a run of one job (its end starts no other
        job, fills no schedule), submitted without `wait`, that nobody waits for now."""
        return run_id in self._solo and not self.hub.watched(events.run_end_topic(run_id))

    def _queue_grew(self, jobs: Sequence[JobSpec], *topics: str, quiet: bool = False) -> None:
        """Wake the leasers for new jobs. A worker that came back short and can take none of
        them keeps skipping the store: with a fleet of sites, a job for one site would
        otherwise cost a lease transaction for every site."""
        with self._queue_lock:
            # only entries at the version just before this notice are moved on: if another
            # notice comes in between, the worker's entry falls behind and it asks again
            before = self.hub.version(events.QUEUE)
            # a subset test per job and worker: a fleet's submit meets every site here
            wanted = {(frozenset(f"{k}={v}" for k, v in j.selector.items()), j.kind) for j in jobs}
            for worker_id, (version, when) in list(self._found_empty.items()):
                joined = self._joined.get(worker_id)
                if version != before or joined is None:
                    continue
                labels, allow = joined
                if not any(kind in allow and need <= labels for need, kind in wanted):
                    self._found_empty[worker_id] = (before + 1, when)
            self.hub.notify(events.QUEUE, *topics)
            if quiet:
                self._quiet_notices += 1

    def _check_object_inputs(self, spec: RunSpec, proj: Project) -> None:
        """Inputs that name objects must be readable by the run's project: knowing a hash
        grants nothing, and the answer is the same whether it is missing or another's."""
        missing = [
            (f"jobs.{j.name}.inputs.{i.name}", f"no object sha256:{i.sha256}")
            for j in spec.jobs
            for i in j.inputs
            if i.sha256 and self.store.objects.readable(i.sha256, [proj.id]) is None
        ]
        if missing:
            raise InvalidRunSpec(missing)

    def _with_task_defaults(self, spec: RunSpec) -> RunSpec:
        """Check every task job's name against the registry; fill in the task's defaults."""
        task_jobs = [j for j in spec.jobs if j.kind == "task"]
        if not task_jobs:
            return spec
        found = self.registry.lookup_all({str(j.task) for j in task_jobs})
        unknown = [j for j in task_jobs if j.task not in found]
        if unknown:
            hint = ""
            if self.registry.problems():
                hint = f" (task files with problems: {'; '.join(self.registry.problems())[:500]})"
            raise InvalidRunSpec(
                [(f"jobs.{j.name}.task", f"unknown task {j.task!r}{hint}") for j in unknown]
            )
        jobs = tuple(found[str(j.task)].apply(j) if j.kind == "task" else j for j in spec.jobs)
        return replace(spec, jobs=jobs)

    def task_source(self, who: Principal, sha256: str) -> bytes:
        """A task file's source by content hash, for workers (and admins)."""
        if who.kind != "worker":
            who.require_admin()
        sha256 = parse_sha256(sha256)
        source = self.registry.source(sha256)
        if source is None:
            raise NotFound(f"no task source with sha256 {sha256}")
        return source

    def _project(self, name: str) -> Project:
        """Projects change rarely: a short cache spares every submit a read."""
        hit = self._projects.get(name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        try:
            proj = self.store.projects.get(name)
        except NotFound:
            raise NotFound(f"no project {name!r}") from None
        self._projects[name] = (now, proj)
        return proj

    def run(self, who: Principal, ref: str) -> Run:
        return self.store.runs.find(ref, who.visible_projects())

    def run_states(self, who: Principal, run_ids: Sequence[int]) -> dict[int, RunState]:
        return self.store.runs.states(run_ids, who.visible_projects())

    def runs(
        self,
        who: Principal,
        *,
        project: str | None = None,
        state: str | None = None,
        name: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Run]:
        ids = who.visible_projects()
        if project:
            proj = self.store.projects.get(project)
            if ids is not None and proj.id not in ids:
                raise NotFound(f"no project {project!r}")
            ids = [proj.id]
        return self.store.runs.list(
            ids, state=state, name=name, before=before, limit=max(1, min(limit, 500))
        )

    def jobs(self, who: Principal, ref: str) -> tuple[Run, list[JobView]]:
        run = self.run(who, ref)
        jobs = self.store.runs.jobs(run.id)
        workers = self._workers_if_waiting(jobs)
        now = time.time()
        views = [
            JobView(j, (), why_waiting(j, jobs, workers, now, self.offline_after)) for j in jobs
        ]
        return run, views

    def job(self, who: Principal, ref: str, label: str) -> tuple[Run, JobView]:
        run = self.run(who, ref)
        job = self.store.runs.job(run.id, label)
        waiting = ""
        if job.state in (JobState.BLOCKED, JobState.QUEUED):
            others = self.store.runs.jobs(run.id) if job.state is JobState.BLOCKED else []
            workers = self.store.workers.list()
            waiting = why_waiting(job, others, workers, time.time(), self.offline_after)
        return run, JobView(job, self.store.runs.attempts(job.id), waiting)

    def _workers_if_waiting(self, jobs: Sequence[Job]) -> list[Worker]:
        if any(j.state is JobState.QUEUED for j in jobs):
            return self.store.workers.list()
        return []

    # -- reads for the dashboard -------------------------------------------------------------

    def matrix(
        self,
        who: Principal,
        name: str,
        *,
        project: str | None = None,
        before: int | None = None,
        limit: int = 20,
    ) -> list[tuple[Run, list[Job]]]:
        """The newest runs of one name with their jobs: the build matrix."""
        found = self.runs(who, project=project, name=name, before=before, limit=limit)
        jobs = self.store.pages.jobs_of([r.id for r in found])
        return [(r, jobs[r.id]) for r in found]

    def run_names(self, who: Principal) -> list[str]:
        """Names of the newest runs this principal may see."""
        return self.store.pages.names(who.visible_projects())

    def outputs(self, who: Principal, ref: str, label: str | None = None) -> list[Output]:
        """What the attempts of a run's jobs (or one job's) produced."""
        run = self.run(who, ref)
        job_id = self.store.runs.job(run.id, label).id if label is not None else None
        return self.store.pages.outputs(run.id, job_id)

    def results(self, who: Principal, ref: str) -> tuple[Run, list[tuple[str, str, str, Any]]]:
        """Each job's label, state, reason and result (a task's return value), in spec order."""
        run = self.run(who, ref)
        return run, self.job_results(run.id)

    def job_results(self, run_id: int) -> list[tuple[str, str, str, Any]]:
        """`results` of a run the caller may already see."""
        return [
            (f"{n}[{i}]" if i else n, state, reason, result)
            for n, i, state, reason, result in self.store.dataflow.results(run_id)
        ]

    def busy_jobs(self, who: Principal) -> dict[int, list[Busy]]:
        """Worker id → the jobs it holds now, among the projects this principal may see."""
        visible = who.visible_projects()
        out: dict[int, list[Busy]] = {}
        for b in self.store.pages.busy():
            if visible is None or b.project_id in visible:
                out.setdefault(b.worker_id, []).append(b)
        return out

    def log(
        self, who: Principal, ref: str, label: str, attempt: int | None, after: int, limit: int
    ) -> tuple[Run, Job, Attempt | None, list[LogChunk]]:
        run, view = self.job(who, ref, label)
        if not view.attempts:
            return run, view.job, None, []
        chosen = view.attempts[-1]
        if attempt is not None:
            match = [a for a in view.attempts if a.number == attempt]
            if not match:
                raise NotFound(f"job {label!r} has no attempt {attempt}")
            chosen = match[0]
        return run, view.job, chosen, self.store.logs.read(chosen.id, after, limit)

    def cancel(self, who: Principal, ref: str, label: str | None = None) -> Run:
        run = self.run(who, ref)
        who.require_submit(self.store.runs.project_id(run.id))
        job_ids = None
        if label is not None:
            job_ids = [self.store.runs.job(run.id, label).id]
        stopped = self.store.runs.cancel(run.id, job_ids, by=who.name)
        self.hub.notify(
            events.run_topic(run.id),
            events.run_end_topic(run.id),
            *(events.attempt_topic(a) for a in stopped),
        )
        return self.store.runs.get(run.id)

    def rerun(self, who: Principal, ref: str, failed_only: bool) -> Run:
        run = self.run(who, ref)
        who.require_submit(self.store.runs.project_id(run.id))
        self.store.runs.rerun(run.id, failed_only)
        self.hub.notify(events.QUEUE, events.run_topic(run.id))
        return self.store.runs.get(run.id)

    # -- workers -------------------------------------------------------------------------

    def join(
        self,
        who: Principal,
        name: str,
        labels: Mapping[str, object],
        slots: int,
        allow: Sequence[str] = ("command",),
        local: bool = False,
        incarnation: str = "",
        rejoin: bool = False,
    ) -> tuple[Worker, str]:
        """Register a worker and give it its own credential; an older one of that name is revoked.

        `incarnation` names the worker's process. A process's first join (`rejoin` false) from
        another process than the last one is a restart: the jobs the old process held were
        ended with it (worker/watchdog.py) and can never be reported now that its credential
        is revoked, so they are ended here at once, as expired leases are (retried, or lost),
        instead of when their leases run out. A process joining again because its credential
        is gone keeps its jobs, and ends no one else's: two live processes given one name by
        mistake take the credential from each other, as before, but not their jobs."""
        who.require_join()
        if not isinstance(name, str) or not WORKER_NAME_RE.match(name):
            raise InvalidInput("a worker name holds 1-64 letters, digits and _ . + -", "name")
        try:
            checked = check_labels(labels, many=True)
        except LabelError as exc:
            raise InvalidInput(str(exc), "labels") from None
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= 1024:
            raise InvalidInput("expected a whole number from 1 to 1024", "slots")
        bad = [k for k in allow if k not in KINDS]
        if bad or not allow:
            raise InvalidInput(f"expected some of {', '.join(KINDS)}", "allow")
        if not isinstance(incarnation, str) or len(incarnation) > 64:
            raise InvalidInput("expected at most 64 characters", "incarnation")
        worker, before = self.store.workers.join(
            name,
            checked,
            slots,
            list(allow),
            local=local,
            incarnation=incarnation,
            # from outside, not the name of a live worker inside a server: that join would take
            # its labels, and so its jobs, and end the ones it runs as if it had restarted
            inside_seen_within=None if local else self.offline_after,
        )
        self._joined[worker.id] = (frozenset(pairs(worker.labels)), frozenset(worker.allow))
        self._found_empty.pop(worker.id, None)
        self.store.tokens.revoke_worker(worker.id)
        self._principals.clear()
        _, secret = self.store.tokens.create("worker", f"worker:{name}", worker_id=worker.id)
        if incarnation and before and before != incarnation and not rejoin:
            ended = self.store.leases.end_held_by(
                worker.id, f"the worker {name} stopped before the job ended and has started again"
            )
            for e in ended:
                log.info("worker %s started again: job %s is %s", name, e.job_id, e.state.value)
            self._announce(ended)
        self.hub.notify(events.WORKERS)
        return worker, secret

    def worker(self, worker_id: int) -> Worker:
        return self.store.workers.get(worker_id)

    def workers(self, who: Principal) -> list[Worker]:
        if who.kind not in ("admin", "submitter", "reader"):
            raise Forbidden(f"a {who.kind} token cannot list workers")
        return self.store.workers.list()

    def drain(self, who: Principal | None, name_or_id: str | int, draining: bool = True) -> Worker:
        """Stop (or resume) handing new jobs to a worker; running jobs go on."""
        if who is not None:
            if who.kind == "worker":
                if who.worker_id != name_or_id:
                    raise Forbidden("a worker may only drain itself")
            else:
                who.require_admin()
        worker = (
            self.store.workers.get(name_or_id)
            if isinstance(name_or_id, int)
            else self.store.workers.by_name(name_or_id)
        )
        self.store.workers.set_draining(worker.id, draining)
        self.hub.notify(events.WORKERS, events.QUEUE)
        return self.store.workers.get(worker.id)

    # -- the lease protocol ----------------------------------------------------------------

    def lease(self, worker_id: int, max_jobs: int) -> list[Lease]:
        """Leases for up to `max_jobs` jobs now (no waiting; callers wait on the QUEUE topic)."""
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or not 0 <= max_jobs <= 1000:
            raise InvalidInput("expected a whole number from 0 to 1000", "max")
        version, now = self._queue_now()
        if self._short_lately(worker_id, version, now):
            return []
        if self._lease_together is not None:
            leases = self._lease_together((worker_id, max_jobs))
        else:
            leases = self.store.leases.lease(worker_id, max_jobs, self.lease_ttl)
        return self._handed_out(worker_id, max_jobs, version, now, leases)

    def lease_for(self, asks: Sequence[tuple[int, int]]) -> list[list[Lease] | Exception]:
        """Leases for several in-process workers at once, (worker, max jobs) each, in one
        store transaction: each worker's leases, or the error for that worker alone."""
        version, now = self._queue_now()
        out: list[list[Lease] | Exception] = [[] for _ in asks]
        todo = [i for i, (w, _) in enumerate(asks) if not self._short_lately(w, version, now)]
        if not todo:
            return out
        found = self.store.leases.lease_many([asks[i] for i in todo], self.lease_ttl)
        for i, got in zip(todo, found, strict=True):
            worker_id, max_jobs = asks[i]
            try:
                if isinstance(got, Exception):
                    raise got
                out[i] = self._handed_out(worker_id, max_jobs, version, now, got)
            except Exception as exc:
                out[i] = exc
        return out

    def _queue_now(self) -> tuple[int, float]:
        """The queue's version and the time, read before a lease is made."""
        if time.time() >= self._retry_due:
            # a retry's back-off is over: it is leasable now, though nothing was committed
            self._retry_due = math.inf
            self.hub.notify(events.QUEUE)
        return self.hub.version(events.QUEUE), time.monotonic()

    def _short_lately(self, worker_id: int, version: int, now: float) -> bool:
        """Nothing made jobs leasable since this worker last came back short: don't ask."""
        empty = self._found_empty.get(worker_id)
        return empty is not None and empty[0] == version and now - empty[1] < RECHECK_EMPTY

    def _handed_out(
        self, worker_id: int, max_jobs: int, version: int, now: float, leases: list[Lease]
    ) -> list[Lease]:
        """Leases just made, ready for their worker: where a task's code is, inputs resolved,
        secrets added; and whether the worker came back short, so that it skips the store
        until the queue moves (`version`: the queue's before the lease was made)."""
        if any(x.payload.get("kind") == "task" for x in leases):
            leases = self._locate_tasks(leases)
        with self._queue_lock:
            if len(leases) < max_jobs:
                self._found_empty[worker_id] = (version, now)
            else:
                self._found_empty.pop(worker_id, None)
        if leases:
            self.hub.notify(*{events.run_topic(x.run_id) for x in leases})
        if any(x.payload.get("inputs") for x in leases):
            leases = [self._with_inputs(x) for x in leases]
        if len(self.secrets):
            leases = [self._with_secrets(x) for x in leases]
        return leases

    def _locate_tasks(self, leases: list[Lease]) -> list[Lease]:
        """Add where a task's code is to its lease: resolved now, not at submit, so that the
        store holds only task names and arguments (a stolen database names no code), and a
        retry or rerun runs the task file as it is now."""
        names = {str(x.payload.get("task")) for x in leases if x.payload.get("kind") == "task"}
        found = self.registry.lookup_all(names)
        out = []
        for x in leases:
            t = found.get(str(x.payload.get("task"))) if x.payload.get("kind") == "task" else None
            if t is not None:
                x = x.with_payload({**x.payload, **t.lease_fields()})
            out.append(x)  # a task gone from the server: the worker fails the job saying so
        return out

    def _with_inputs(self, lease: Lease) -> Lease:
        """Resolve the inputs a job takes from other jobs to what their passed attempts
        produced, now (a rerun of the producer changes them); the store keeps the spec only.
        An output the producer did not produce fails the job, naming the input."""
        refs = input_refs(lease.payload)
        if not refs:
            return lease
        resolved = self.store.dataflow.resolve(lease.run_id, [r for _, _, r in refs if r])
        placed: list[dict[str, str]] = []
        for name, sha, ref in refs:
            if ref is not None:
                found = resolved.get(ref)
                if found is None:
                    problem = (
                        f"input {name!r}: job {ref[0]!r} produced no {ref[1]!r} "
                        "(nothing matched, or it has not passed)"
                    )
                    return lease.with_payload({**lease.payload, "input_problem": problem})
                sha = found[0]
            placed.append({"name": name, "sha256": str(sha)})
        return lease.with_payload({**lease.payload, "input_objects": placed})

    def _with_secrets(self, lease: Lease) -> Lease:
        """Secret values go with the lease only (never into the store)."""
        names = list(lease.payload.get("secrets") or [])
        if lease.payload.get("sudo"):
            names.append(lease.payload["sudo"])  # the sudo password: not in the job's env
        if not names:
            return lease
        payload = {**lease.payload, "secret_values": self.secrets.resolve(names)}
        return lease.with_payload(payload)

    def lease_wait(
        self, worker_id: int, max_jobs: int, wait: float, stop: threading.Event | None = None
    ) -> list[Lease]:
        """Blocking long-poll for threads (the local worker); `stop` ends it early (set it, then
        notify the queue topic to wake the wait)."""
        deadline = time.monotonic() + wait
        while stop is None or not stop.is_set():
            mark = self._queue_mark()
            leases = self.lease(worker_id, max_jobs)
            left = deadline - time.monotonic()
            if leases or left <= 0:
                return leases
            if self.hub.wait(events.QUEUE, mark[0], self.queue_wait(left)):
                self._gather_quiet(mark, max_jobs, stop)
        return []

    def _queue_mark(self) -> tuple[int, int]:
        """The queue's version and how many of its notices were quiet, read together."""
        with self._queue_lock:
            return self.hub.version(events.QUEUE), self._quiet_notices

    def _gather_quiet(
        self, since: tuple[int, int], max_jobs: int, stop: threading.Event | None
    ) -> None:
        """Woken by new work: while every notice since `since` is of jobs that may wait (single
        jobs nobody waits for), wait up to QUIET_LEASE for more, so that a stream of them is
        leased a few at a time rather than one lease each."""
        until = time.monotonic() + QUIET_LEASE
        while stop is None or not stop.is_set():
            version, quiet = self._queue_mark()
            told = version - since[0]
            if told != quiet - since[1] or told >= max_jobs:
                return  # a notice that may not wait, or enough for the worker
            left = until - time.monotonic()
            if left <= 0:
                return
            self.hub.wait(events.QUEUE, version, left)

    def queue_wait(self, left: float) -> float:
        """How long a lease long-poll may sleep on the queue topic before asking again."""
        # in slices: work submitted through another coordinator wakes nobody here; and no
        # later than the next retry's back-off ends
        return max(0.0, min(left, 5.0, self._retry_due - time.time()))

    def start(
        self, worker_id: int | Sequence[int], items: Sequence[tuple[int, str, float]]
    ) -> list[int]:
        lost = self.store.leases.start(items)
        if len(lost) < len(items):
            self.hub.notify(*{events.attempt_topic(a) for a, _, _ in items})
        return lost

    def heartbeat(
        self, worker_id: int | Sequence[int], items: Sequence[tuple[int, str]]
    ) -> list[int]:
        self.store.workers.touch(*([worker_id] if isinstance(worker_id, int) else worker_id))
        return self.store.leases.heartbeat(items, self.lease_ttl)

    def append_log(self, worker_id: int | Sequence[int], chunks: Sequence[Upload]) -> list[int]:
        lost = self.store.logs.append(chunks)
        self.hub.notify(*{events.attempt_topic(c.attempt_id) for c in chunks})
        return lost

    def _lease_batch(self, asks: list[tuple[int, int]]) -> list[list[Lease] | NotFound]:
        return self.store.leases.lease_many(asks, self.lease_ttl)

    def _finish_batch(self, asks: list[list[Report]]) -> list[list[Ended | LeaseLost]]:
        results = self.store.leases.finish([r for reports in asks for r in reports])
        out, at = [], 0
        for reports in asks:
            out.append(results[at : at + len(reports)])
            at += len(reports)
        return out

    def finish(
        self, worker_id: int | Sequence[int], reports: Sequence[Report]
    ) -> list[Ended | LeaseLost]:
        if self._finish_together is not None:
            results = self._finish_together(list(reports))
        else:
            results = self.store.leases.finish(reports)
        self._announce([r for r in results if isinstance(r, Ended)])
        return results

    def report(
        self,
        worker_id: int | Sequence[int],
        *,
        started: Sequence[tuple[int, str, float]] = (),
        logs: Sequence[Upload] = (),
        heartbeats: Sequence[tuple[int, str]] = (),
        finished: Sequence[Report] = (),
        released: Sequence[tuple[int, str]] = (),
        reason: str = "released by the worker",
    ) -> tuple[list[int], list[Ended | LeaseLost]]:
        """Everything a worker has to say, in the order that keeps it right: starts, then logs
        (before the ends they belong to), heartbeats, ends, releases. An empty report still
        tells that the worker is alive. Returns the attempts it no longer holds, and the ends.

        In-process workers may report together (a fleet's sites, one report for all of them):
        `worker_id` is then the list of them, every one of them alive.
        """
        lost: set[int] = set()
        if started:
            lost |= set(self.start(worker_id, started))
        if logs:
            lost |= set(self.append_log(worker_id, logs))
        if heartbeats or not (started or logs or finished or released):
            lost |= set(self.heartbeat(worker_id, heartbeats))
        results = self.finish(worker_id, finished) if finished else []
        lost |= {
            r.attempt_id for r, x in zip(finished, results, strict=True) if isinstance(x, LeaseLost)
        }
        if released:
            self.release(worker_id, released, reason)
        return sorted(lost), results

    def release(
        self, worker_id: int | Sequence[int], items: Sequence[tuple[int, str]], reason: str
    ) -> list[int]:
        requeued = self.store.leases.release(items, reason)
        self.hub.notify(events.QUEUE, *(events.attempt_topic(a) for a, _ in items))
        return requeued

    def sweep(self) -> list[Ended]:
        """End leases past their expiry (the sweeper calls this even when no worker asks)."""
        ended = self.store.leases.expire()
        self._announce(ended)
        return ended

    def _announce(self, ended: Sequence[Ended]) -> None:
        if not ended:
            return
        due = [e.not_before for e in ended if e.not_before > 0]
        if due:
            self._retry_due = min(self._retry_due, *due)
        topics = {events.run_topic(e.run_id) for e in ended}
        topics |= {events.run_end_topic(e.run_id) for e in ended if e.run_ended}
        if self._solo:
            with self._solo_lock:
                self._solo.difference_update(e.run_id for e in ended if e.run_ended)
        topics |= {events.attempt_topic(e.attempt_id) for e in ended}
        if any(e.queued or e.state is JobState.QUEUED for e in ended):
            topics.add(events.QUEUE)
        elif self.store.leases.host_schedules_live or self.store.leases.parallel_limits_live:
            # a host one job at a time, or a run at its max_parallel, may take the next now
            topics.add(events.QUEUE)
        self.hub.notify(*topics)
