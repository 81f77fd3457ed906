"""What every route needs: the coordinator, the caller, and JSON bodies read with clear errors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from corral.auth import Principal, bearer
from corral.coordinator import Coordinator
from corral.errors import InvalidInput

P = ParamSpec("P")
T = TypeVar("T")


def answer(data: Any, status: int = 200) -> Response:
    """A JSON response built directly: routes hand back plain dicts of JSON types, so the
    framework's generic encoding and response-model checks would only add time."""
    return Response(
        json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(),
        status_code=status,
        media_type="application/json",
    )


def coordinator(request: Request) -> Coordinator:
    coord: Coordinator = request.app.state.coordinator
    return coord


async def principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <token>`; 401 when it is missing or unknown."""
    secret = bearer(request.headers.get("authorization"))
    coord = coordinator(request)
    known = coord.cached_principal(secret)
    if known is not None:
        return known
    return await run_in_threadpool(coord.authenticate, secret)


async def call(request: Request, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a store-bound use case for an async route.

    On the embedded SQLite store a call takes well under a millisecond, less than the two
    thread hand-offs of a thread pool cost on a busy machine, so it runs right here; on
    PostgreSQL, where a call waits on the network, it goes to the thread pool.
    """
    if coordinator(request).store.db.is_sqlite:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


def query_number(request: Request, name: str, default: float, low: float, high: float) -> float:
    """A number from the query string, read by hand on the hottest routes (see `lean`)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails this too
        raise InvalidInput(f"expected a number from {low:g} to {high:g}, not {raw!r}", name)
    return value


def lean(*parameters: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its caller and query itself.

    The two routes every run goes through (submit, wait) take the bare request: FastAPI's
    dependency and parameter machinery costs about a tenth of a millisecond of CPU a request
    there. The schema still lists their query parameters, from here."""
    return {"parameters": list(parameters)}


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise InvalidInput("the request body is empty: expected JSON")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidInput("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
