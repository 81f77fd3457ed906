"""What every route needs: the coordinator, the caller, and JSON bodies read with clear errors."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from corral.auth import Principal, bearer
from corral.coordinator import Coordinator
from corral.errors import InvalidInput


def coordinator(request: Request) -> Coordinator:
    coord: Coordinator = request.app.state.coordinator
    return coord


async def principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <token>`; 401 when it is missing or unknown."""
    secret = bearer(request.headers.get("authorization"))
    return await run_in_threadpool(coordinator(request).authenticate, secret)


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
