"""Request bodies (strict: unknown fields are rejected) and the JSON shapes of records."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.coordinator import JobView
from corral.domain.dataflow import path_problem
from corral.domain.labels import render
from corral.domain.models import Attempt, Job, Lease, LogChunk, Run, Token, Worker


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class JoinBody(Strict):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    slots: int = 1
    allow: list[str] = Field(default_factory=lambda: ["command"])
    # the worker's process, made at its start: a first join from another one is a restart
    incarnation: str = Field(default="", max_length=64)
    # this process joined before and its credential is gone: not a restart
    rejoin: bool = False


class LeaseBody(Strict):
    max: int = Field(default=1, ge=0, le=1000)
    wait: float = Field(default=0.0, ge=0.0, le=300.0)


class Held(Strict):
    attempt: int
    token: str = Field(min_length=1, max_length=64)


class Started(Held):
    at: float


class LogItem(Held):
    seq: int = Field(ge=0)
    stream: str = Field(pattern="^(stdout|stderr|corral)$")
    ts: float
    data: str = Field(max_length=4 * 1024 * 1024)


class OutputItem(Strict):
    """An object a job produced, uploaded before its end is reported."""

    name: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    size: int = Field(ge=0)

    @field_validator("name")
    @classmethod
    def _plain_path(cls, name: str) -> str:
        problem = path_problem(name, glob=True)
        if problem is not None:
            raise ValueError(problem)
        return name


class Finished(Held):
    outcome: str = Field(pattern="^(passed|failed|timed_out)$")
    exit_code: int | None = None
    reason: str = Field(default="", max_length=4096)
    started_at: float | None = None
    resources: dict[str, float] = Field(default_factory=dict)
    result: Any = None  # a task's return value
    outputs: list[OutputItem] = Field(default_factory=list, max_length=10_000)


class ReportBody(Strict):
    started: list[Started] = Field(default_factory=list)
    heartbeats: list[Held] = Field(default_factory=list)
    logs: list[LogItem] = Field(default_factory=list)
    finished: list[Finished] = Field(default_factory=list)
    released: list[Held] = Field(default_factory=list)
    reason: str = Field(default="released by the worker", max_length=1024)


class DrainBody(Strict):
    draining: bool = True


class RerunBody(Strict):
    failed: bool = False


MAX_WAIT_RUNS = 10_000  # runs one wait request may list


class WaitRunsBody(Strict):
    runs: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, max_length=MAX_WAIT_RUNS)
    timeout: float = Field(default=25.0, ge=0, le=300)


class TokenBody(Strict):
    kind: str = Field(pattern="^(admin|submitter|reader|join)$")
    project: str | None = None
    name: str = Field(default="", max_length=128)


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "project": run.project,
        "name": run.name,
        "schedule": run.schedule,
        "state": run.state.value,
        "params": dict(run.params),
        "submitted_by": run.submitted_by,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "counts": dict(run.counts),
        "max_parallel": run.max_parallel,
        "max_failures": run.max_failures,
    }


def job_json(job: Job, waiting: str = "") -> dict[str, Any]:
    return {
        "id": job.id,
        "run_id": job.run_id,
        "name": job.name,
        "instance": job.instance,
        "label": job.label,
        "kind": job.kind,
        "spec": dict(job.payload),
        "on": dict(job.selector),
        "needs": list(job.needs),
        "when": job.when,
        "timeout": job.timeout,
        "retries": job.retries,
        "state": job.state.value,
        "attempts": job.attempts,
        "reason": job.reason,
        "waiting": waiting,
        "exit_code": job.exit_code,
        "worker": job.worker,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
    }


def view_json(view: JobView) -> dict[str, Any]:
    out = job_json(view.job, view.waiting)
    out["attempt_list"] = [attempt_json(a) for a in view.attempts]
    # the job's result is its latest attempt's (a task's return value; None otherwise)
    out["result"] = view.attempts[-1].result if view.attempts else None
    return out


def attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "number": a.number,
        "worker": a.worker,
        "state": a.state,
        "leased_at": a.leased_at,
        "started_at": a.started_at,
        "ended_at": a.ended_at,
        "exit_code": a.exit_code,
        "reason": a.reason,
        "resources": dict(a.resources),
        "log_bytes": a.log_bytes,
        "result": a.result,
    }


def chunk_json(c: LogChunk) -> dict[str, Any]:
    return {"seq": c.seq, "stream": c.stream, "ts": c.ts, "data": c.data}


def lease_json(x: Lease) -> dict[str, Any]:
    return {
        "attempt": x.attempt_id,
        "token": x.token,
        "job_id": x.job_id,
        "run_id": x.run_id,
        "run_name": x.run_name,
        "job": x.job_name,
        "instance": x.instance,
        "number": x.number,
        "spec": dict(x.payload),
        "timeout": x.timeout,
        "ttl": x.ttl,
    }


def worker_json(w: Worker, now: float, offline_after: float) -> dict[str, Any]:
    return {
        "id": w.id,
        "name": w.name,
        "labels": dict(w.labels),
        "labels_text": render(w.labels),
        "slots": w.slots,
        "busy": w.busy,
        "allow": list(w.allow),
        "state": w.state(now, offline_after),
        "draining": w.draining,
        "local": w.local,
        "last_seen": w.last_seen,
        "joined_at": w.joined_at,
    }


def token_json(t: Token) -> dict[str, Any]:
    return {
        "id": t.id,
        "kind": t.kind,
        "project": t.project,
        "name": t.name,
        "created_at": t.created_at,
        "revoked": t.revoked,
    }
