"""Runs, jobs and logs over HTTP: submit, read, wait, cancel, rerun."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from corral import events
from corral.api.dataflow import add_outputs, results_json
from corral.api.deps import (
    answer,
    call,
    coordinator,
    json_body,
    lean,
    principal,
    query_number,
)
from corral.api.schemas import (
    RerunBody,
    WaitRunsBody,
    attempt_json,
    chunk_json,
    job_json,
    run_json,
    view_json,
)
from corral.auth import Principal
from corral.domain.models import Run
from corral.domain.runspec import parse

router = APIRouter(prefix="/api/v1")
WAIT_FRONT = 500  # runs a many-run wait reads again at each end it sees
Who = Annotated[Principal, Depends(principal)]


_PROJECT = {"name": "project", "in": "query", "required": False, "schema": {"type": "string"}}
_SUBMIT_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "seconds to hold the answer until the run has ended (0: answer at once)",
    "schema": {"type": "number", "minimum": 0, "maximum": 300, "default": 0},
}
_TIMEOUT = {
    "name": "timeout",
    "in": "query",
    "required": False,
    "schema": {"type": "number", "minimum": 0, "maximum": 300, "default": 25.0},
}


@router.post("/runs", status_code=201, openapi_extra=lean(_PROJECT, _SUBMIT_WAIT))
async def submit(request: Request) -> Response:
    """Submit a run (JSON run spec); it is durable when this answers 201.

    With `wait`, the answer comes when the run has ended or `wait` seconds have passed,
    whichever is first: submit and wait in one round trip for a caller that wants the end.
    An ended run's answer also lists every job's end and result (`results`, as
    `GET /runs/{ref}/results` has them).
    """
    who = await principal(request)
    project = request.query_params.get("project")
    wait = query_number(request, "wait", 0.0, 0.0, 300.0)
    body = await json_body(request)
    spec = parse(body)
    deadline = time.monotonic() + wait
    coord = coordinator(request)
    mark = coord.hub.mark()
    run = await call(request, coord.submit, who, spec, project, watched=wait > 0)
    if wait <= 0:
        return answer(run_json(run), 201)
    # the run's commit was not synced: it is, before the answer (the synced commit of its
    # end most often has done it by then). A mark taken after the submit covers its commit.
    written = coord.store.db.commits
    if not run.state.ended:
        # a new run's end topic is told only once the run may have ended: untold since
        # the submit, the state the submit read still stands and needs no second reading
        topic = events.run_end_topic(run.id)
        version = coord.hub.version(topic)
        reread = coord.hub.told_since(topic, mark)
        run = await _until_ended(request, run, deadline, version=version, reread=reread)
    out = run_json(run)
    if run.state.ended:
        # what the caller waited for: every job's end and result, in the same answer
        out["results"] = results_json(await call(request, coord.job_results, run.id))
    if not coord.store.db.is_durable(written):
        await call(request, coord.store.db.make_durable, written)
    return answer(out, 201)


@router.get("/runs")
def list_runs(
    request: Request,
    who: Who,
    project: str | None = None,
    state: Annotated[str | None, Query(pattern="^(queued|running|passed|failed|canceled)$")] = None,
    name: str | None = None,
    before: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    runs = coordinator(request).runs(
        who, project=project, state=state, name=name, before=before, limit=limit
    )
    return answer({"runs": [run_json(r) for r in runs]})


@router.get("/runs/{ref}")
def get_run(request: Request, who: Who, ref: str) -> Response:
    run, views = coordinator(request).jobs(who, ref)
    out = run_json(run)
    out["jobs"] = [job_json(v.job, v.waiting) for v in views]
    return answer(out)


@router.get("/runs/{ref}/wait", openapi_extra=lean(_TIMEOUT))
async def wait_run(request: Request, ref: str) -> Response:
    """Answer when the run has ended, or when `timeout` seconds have passed (long-poll)."""
    who = await principal(request)
    timeout = query_number(request, "timeout", 25.0, 0.0, 300.0)
    coord = coordinator(request)
    deadline = time.monotonic() + timeout
    # the version is read before the state it guards: an end in between is never missed
    topic = events.run_end_topic(int(ref)) if ref.isdigit() else ""
    version = coord.hub.version(topic) if topic else 0
    run = await call(request, coord.run, who, ref)
    # by name, the topic is known only now: read its version, then the run again
    run = await _until_ended(request, run, deadline, version=version, reread=not topic)
    return answer(run_json(run))


@router.post("/runs/wait")
async def wait_runs(request: Request, who: Who, body: WaitRunsBody) -> Response:
    """Answer when every run listed has ended, or when `timeout` seconds have passed: each
    run's id and state, in the order asked, and whether all have ended. A caller that
    submitted many runs waits for all of them in one request instead of one each."""
    coord = coordinator(request)
    deadline = time.monotonic() + body.timeout
    states = await call(request, coord.run_states, who, body.runs)
    pending = [i for i in dict.fromkeys(body.runs) if not states[i].ended]
    while pending and (left := deadline - time.monotonic()) > 0:
        # the version before the states it guards: an end in between is never missed
        topic = events.run_end_topic(pending[0])
        version = coord.hub.version(topic)
        # the front of the list only: runs that end one by one cost a short read each,
        # not a read of every run still waited for
        front = pending[:WAIT_FRONT]
        states.update(await call(request, coord.run_states, who, front))
        ended = {i for i in front if states[i].ended}
        if ended:
            pending[: len(front)] = [i for i in front if i not in ended]
            continue
        # in slices: an end recorded by another coordinator may wake nobody here
        await coord.hub.wait_async(topic, version, min(left, 5.0))
    runs = [{"id": i, "state": states[i].value} for i in body.runs]
    return answer({"runs": runs, "ended": not pending})


async def _until_ended(
    request: Request, run: Run, deadline: float, *, version: int = 0, reread: bool = False
) -> Run:
    """The run once it has ended, or as it stands at `deadline`.

    `version` is the run's end topic as read before `run` was; with `reread`, it is read now
    and the run after it (a version read after the state it guards could miss an end).
    """
    coord = coordinator(request)
    topic = events.run_end_topic(run.id)
    if reread:
        version = coord.hub.version(topic)
        run = await call(request, coord.store.runs.get, run.id)
    while True:
        left = deadline - time.monotonic()
        if run.state.ended or left <= 0:
            return run
        # in slices: an end recorded by another coordinator may wake nobody here
        await coord.hub.wait_async(topic, version, min(left, 5.0))
        version = coord.hub.version(topic)
        # the topic is told only when the run may have ended: read it whole, once
        run = await call(request, coord.store.runs.get, run.id)


@router.post("/runs/{ref}/cancel")
def cancel_run(request: Request, who: Who, ref: str) -> dict[str, Any]:
    return run_json(coordinator(request).cancel(who, ref))


@router.post("/runs/{ref}/rerun")
async def rerun(request: Request, who: Who, ref: str) -> dict[str, Any]:
    raw = await request.body()
    body = RerunBody.model_validate_json(raw) if raw.strip() else RerunBody()
    run = await run_in_threadpool(coordinator(request).rerun, who, ref, body.failed)
    return run_json(run)


@router.get("/runs/{ref}/jobs/{label}")
def get_job(request: Request, who: Who, ref: str, label: str) -> Response:
    coord = coordinator(request)
    _, view = coord.job(who, ref, label)
    return answer(add_outputs(view_json(view), coord.outputs(who, ref, label)))


@router.post("/runs/{ref}/jobs/{label}/cancel")
def cancel_job(request: Request, who: Who, ref: str, label: str) -> dict[str, Any]:
    coord = coordinator(request)
    run = coord.cancel(who, ref, label)
    return job_json(coord.store.runs.job(run.id, label))


@router.get("/runs/{ref}/jobs/{label}/log")
async def get_log(
    request: Request,
    who: Who,
    ref: str,
    label: str,
    attempt: int | None = None,
    after: Annotated[int, Query(ge=-1)] = -1,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    wait: Annotated[float, Query(ge=0, le=300)] = 0.0,
) -> dict[str, Any]:
    """Log chunks after `after`; with `wait`, hang until there are some or the job has ended."""
    coord = coordinator(request)
    deadline = time.monotonic() + wait
    topic, version = "", 0
    while True:
        run, job, att, chunks = await run_in_threadpool(
            coord.log, who, ref, label, attempt, after, limit
        )
        left = deadline - time.monotonic()
        # ended: nothing more will come for this attempt (or for a job that never ran)
        ended = att.ended_at is not None if att else job.state.ended
        if chunks or left <= 0 or ended:
            return {
                "run": run.id,
                "job": job.label,
                "state": job.state.value,
                "attempt": attempt_json(att) if att else None,
                "chunks": [chunk_json(c) for c in chunks],
                "next": chunks[-1].seq if chunks else after,
                "ended": ended and len(chunks) < limit,
            }
        # wake on new chunks of this attempt, or on a change of the run (a new attempt)
        watch = events.attempt_topic(att.id) if att else events.run_topic(run.id)
        if watch != topic:
            # a version read after the state it guards could miss a change in between: read
            # the topic's version now, then look once more before waiting
            topic, version = watch, coord.hub.version(watch)
            continue
        await coord.hub.wait_async(topic, version, min(left, 1.0))
        version = coord.hub.version(topic)
