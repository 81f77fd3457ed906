"""The two requests every run goes through, served past the framework's layers.

Through FastAPI, a submit or a wait passes seven middleware layers, the router's matching
against every route, and the request and response wrappers around the route: for a run of one
task job, about a tenth of the coordinator's time under the interpreter lock went to their own
code (docs/benchmarks.md). Here those two
are recognised by method and path and given straight to their route functions, under the same
body cap and with the same JSON errors. Every other request, and the OpenAPI schema, stays
FastAPI's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from starlette.types import Receive, Scope, Send

from corral.api import runs
from corral.api.limits import BodyTooLarge, capped, declared_too_large, too_large
from corral.errors import CorralError

Route = Callable[..., Awaitable[Response]]

RUNS = "/api/v1/runs"
_RUN_PREFIX = RUNS + "/"
_WAIT_SUFFIX = "/wait"


def match(scope: Scope) -> tuple[Route, dict[str, str]] | None:
    """The route and path parameters of a request the lane serves; None for the others."""
    method, path = scope["method"], scope["path"]
    if method == "POST" and path == RUNS:
        return runs.submit, {}
    if method == "GET" and path.startswith(_RUN_PREFIX) and path.endswith(_WAIT_SUFFIX):
        ref = path[len(_RUN_PREFIX) : -len(_WAIT_SUFFIX)]
        if ref and "/" not in ref:  # as the route's `{ref}` matches
            return runs.wait_run, {"ref": ref}
    return None


async def serve(
    scope: Scope,
    receive: Receive,
    send: Send,
    route: tuple[Route, dict[str, str]],
    max_body: int,
    on_error: Callable[[CorralError], Response],
) -> None:
    if declared_too_large(scope, max_body):
        await too_large(send, max_body)
        return
    handler, params = route
    try:
        response = await handler(Request(scope, capped(receive, max_body)), **params)
    except BodyTooLarge:
        await too_large(send, max_body)
        return
    except CorralError as exc:
        response = on_error(exc)
    await response(scope, receive, send)
