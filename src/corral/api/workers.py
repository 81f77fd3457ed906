"""The worker side of the API: join, lease (long-poll, batched), report; and workers for people."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from corral import events
from corral.api.deps import answer, call, coordinator, principal
from corral.api.schemas import (
    DrainBody,
    Finished,
    Held,
    JoinBody,
    LeaseBody,
    LogItem,
    ReportBody,
    Started,
    lease_json,
    worker_json,
)
from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Report, Upload
from corral.errors import InvalidInput, LeaseLost

router = APIRouter(prefix="/api/v1")
Who = Annotated[Principal, Depends(principal)]


@router.post("/workers/join")
def join(request: Request, who: Who, body: JoinBody) -> dict[str, Any]:
    """Register with a join token; the answer holds this worker's own credential, shown once."""
    coord = coordinator(request)
    worker, secret = coord.join(
        who,
        body.name,
        body.labels,
        body.slots,
        body.allow,
        incarnation=body.incarnation,
        rejoin=body.rejoin,
    )
    return {
        "worker": worker_json(worker, time.time(), coord.offline_after),
        "token": secret,
        "lease_ttl": coord.lease_ttl,
    }


@router.post("/workers/lease")
async def lease(request: Request, who: Who, body: LeaseBody) -> Response:
    """Up to `max` leases; waits up to `wait` seconds for work when there is none."""
    coord = coordinator(request)
    worker_id = who.require_worker()
    deadline = time.monotonic() + body.wait
    # a worker that dies while it waits must not be handed jobs nobody will run (they would
    # sit leased until the lease expires, and end `lost` without retries): watch the socket
    gone: asyncio.Task[None] | None = None
    try:
        while True:
            version = coord.hub.version(events.QUEUE)
            leases = await call(request, coord.lease, worker_id, body.max)
            if leases and gone is not None and gone.done():
                pairs = [(x.attempt_id, x.token) for x in leases]
                await call(request, coord.release, worker_id, pairs, "the worker hung up")
                return answer({"leases": []})
            left = deadline - time.monotonic()
            if leases or left <= 0:
                return answer({"leases": [lease_json(x) for x in leases]})
            if gone is None:
                gone = asyncio.ensure_future(_hung_up(request))
            woke = asyncio.ensure_future(
                coord.hub.wait_async(events.QUEUE, version, coord.queue_wait(left))
            )
            await asyncio.wait({gone, woke}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                woke.cancel()
                return answer({"leases": []})
    finally:
        if gone is not None:
            gone.cancel()


async def _hung_up(request: Request) -> None:
    """Return when the client has closed the connection (the body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.1)  # not expected once the body is read; never spin


def _report(coord: Coordinator, worker_id: int, body: ReportBody) -> dict[str, Any]:
    lost, results = coord.report(
        worker_id,
        started=[(s.attempt, s.token, s.at) for s in body.started],
        logs=[_upload(c) for c in body.logs],
        heartbeats=[(h.attempt, h.token) for h in body.heartbeats],
        finished=[_finish(f) for f in body.finished],
        released=[(r.attempt, r.token) for r in body.released],
        reason=body.reason,
    )
    finished = [
        {"attempt": item.attempt, "ok": False, "error": result.message}
        if isinstance(result, LeaseLost)
        else {"attempt": item.attempt, "ok": True, "state": result.state.value}
        for item, result in zip(body.finished, results, strict=True)
    ]
    worker = coord.worker(worker_id)
    return {"lost": lost, "finished": finished, "draining": worker.draining}


@router.post("/workers/report")
async def report(request: Request, who: Who, body: ReportBody) -> Response:
    """Everything a worker has to say in one request: starts, heartbeats, logs, ends, releases.

    Items whose lease is not current are listed in `lost` (the worker stops those jobs);
    nothing of theirs is recorded.
    """
    return answer(await call(request, _report, coordinator(request), who.require_worker(), body))


@router.post("/workers/drain")
def drain_self(request: Request, who: Who, body: DrainBody) -> dict[str, Any]:
    coord = coordinator(request)
    worker = coord.drain(who, who.require_worker(), body.draining)
    return worker_json(worker, time.time(), coord.offline_after)


@router.get("/workers")
def list_workers(request: Request, who: Who) -> dict[str, Any]:
    coord = coordinator(request)
    now = time.time()
    return {"workers": [worker_json(w, now, coord.offline_after) for w in coord.workers(who)]}


@router.post("/workers/{name}/drain")
def drain(request: Request, who: Who, name: str, body: DrainBody) -> dict[str, Any]:
    coord = coordinator(request)
    worker = coord.drain(who, name, body.draining)
    return worker_json(worker, time.time(), coord.offline_after)


# -- one attempt at a time: the same protocol, answering 409 when the lease is not held ------


def _same(attempt: int, body: Held) -> None:
    if body.attempt != attempt:
        raise InvalidInput(
            f"the body names attempt {body.attempt} but the path attempt {attempt}", "attempt"
        )


def _single(lost: list[int], attempt: int) -> dict[str, Any]:
    if attempt in lost:
        raise LeaseLost(f"attempt {attempt}: not the current lease")
    return {"ok": True}


@router.post("/attempts/{attempt}/start")
def start(request: Request, who: Who, attempt: int, body: Started) -> dict[str, Any]:
    _same(attempt, body)
    lost = coordinator(request).start(who.require_worker(), [(attempt, body.token, body.at)])
    return _single(lost, attempt)


@router.post("/attempts/{attempt}/heartbeat")
def heartbeat(request: Request, who: Who, attempt: int, body: Held) -> dict[str, Any]:
    _same(attempt, body)
    lost = coordinator(request).heartbeat(who.require_worker(), [(attempt, body.token)])
    return _single(lost, attempt)


@router.post("/attempts/{attempt}/log")
def log(request: Request, who: Who, attempt: int, body: LogItem) -> dict[str, Any]:
    _same(attempt, body)
    lost = coordinator(request).append_log(who.require_worker(), [_upload(body)])
    return _single(lost, attempt)


@router.post("/attempts/{attempt}/finish")
def finish(request: Request, who: Who, attempt: int, body: Finished) -> dict[str, Any]:
    _same(attempt, body)
    (result,) = coordinator(request).finish(who.require_worker(), [_finish(body)])
    if isinstance(result, LeaseLost):
        raise result
    return {"ok": True, "state": result.state.value}


def _upload(c: LogItem) -> Upload:
    return Upload(c.attempt, c.token, c.seq, c.stream, c.ts, c.data)


def _finish(f: Finished) -> Report:
    return Report(
        f.attempt,
        f.token,
        f.outcome,
        f.exit_code,
        f.reason,
        f.started_at,
        dict(f.resources),
        f.result,
        [(o.name, o.sha256, o.size) for o in f.outputs],
    )


__all__ = ["Finished", "Held", "LogItem", "Started", "router"]
