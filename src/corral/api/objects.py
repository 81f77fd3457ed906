"""Objects over HTTP: PUT streams a blob in under its sha256, GET and HEAD read it (with Range)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from corral.api.deps import answer, call, coordinator, principal
from corral.auth import Principal
from corral.errors import InvalidInput, PayloadTooLarge, RangeNotSatisfiable
from corral.objects.backend import CHUNK
from corral.objects.names import parse_sha256
from corral.objects.ranges import parse_range
from corral.store.objects import ObjectRow

router = APIRouter(prefix="/api/v1")
Who = Annotated[Principal, Depends(principal)]


def object_json(row: ObjectRow) -> dict[str, object]:
    return {"sha256": row.sha256, "size": row.size, "created_at": row.created_at}


@router.put("/objects/{sha256}", status_code=201)
async def put_object(
    request: Request, who: Who, sha256: str, project: str | None = None, attempt: int | None = None
) -> Response:
    """Upload the body as the object `sha256` (201; 200 when it was stored before). The body
    is streamed, hashed and checked; the project may read the object once this answers. A
    worker uploads a job's output with `attempt=` (an attempt it holds): the run's project."""
    coord = coordinator(request)
    sha = parse_sha256(sha256)
    declared = _content_length(request)
    # not `call`: looking for the blob may ask a remote service
    proj, upload = await run_in_threadpool(coord.begin_upload, who, sha, project, declared, attempt)
    try:
        seen = 0
        pending = bytearray()
        async for piece in request.stream():
            seen += len(piece)
            if seen > coord.max_object_size:
                # a chunked body that passed the cap: stop now, read no more of it
                raise PayloadTooLarge(f"an object may be at most {coord.max_object_size} bytes")
            pending += piece
            if len(pending) >= CHUNK:
                # hashing and writing a chunk blocks: keep it off the event loop
                await run_in_threadpool(upload.feed, bytes(pending))
                pending.clear()
        if pending:
            await run_in_threadpool(upload.feed, bytes(pending))
        row = await run_in_threadpool(coord.finish_upload, proj, upload)
    except BaseException:
        # a cancelled request (the client hung up) must still leave nothing behind
        await asyncio.shield(run_in_threadpool(upload.abort))
        raise
    return answer(object_json(row), 200 if upload.stored else 201)


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"malformed Content-Length {value!r}") from None


@router.get("/objects/{sha256}")
async def get_object(
    request: Request, who: Who, sha256: str, project: str | None = None
) -> Response:
    """The object's bytes, or one byte range of them (206) with `Range: bytes=FIRST-LAST`."""
    return await read_object(request, who, sha256, project, body=True)


@router.head("/objects/{sha256}")
async def head_object(
    request: Request, who: Who, sha256: str, project: str | None = None
) -> Response:
    """What GET would answer, without the bytes."""
    return await read_object(request, who, sha256, project, body=False)


async def read_object(
    request: Request, who: Principal, sha256: str, project: str | None, *, body: bool
) -> Response:
    """GET/HEAD of an object for `who`: the API's bearer token, or the dashboard's session."""
    coord = coordinator(request)
    row = await call(request, coord.find_object, who, sha256, project)
    headers = {"accept-ranges": "bytes", "etag": f'"{row.sha256}"'}
    try:
        wanted = parse_range(request.headers.get("range"), row.size)
    except RangeNotSatisfiable as exc:
        error = answer({"error": {"type": "RangeNotSatisfiable", "message": exc.message}}, 416)
        error.headers["content-range"] = f"bytes */{row.size}"
        return error
    start, end, status = 0, row.size, 200
    if wanted is not None:
        start, end, status = wanted[0], wanted[1] + 1, 206
        headers["content-range"] = f"bytes {wanted[0]}-{wanted[1]}/{row.size}"
    headers["content-length"] = str(end - start)
    if not body:
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    return StreamingResponse(
        coord.object_bytes(row, start, end),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )
