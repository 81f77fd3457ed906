"""The ASGI app: the JSON API under /api/v1, /healthz, /metrics; errors mapped in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from corral import metrics
from corral.api import dataflow, fast_lane, hosts, objects, runs, shared, tasks, tokens, workers
from corral.api.limits import BodyLimit
from corral.coordinator import Coordinator
from corral.dashboard import routes as dashboard
from corral.errors import CorralError, InvalidInput, InvalidRunSpec

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class CorralAPI(FastAPI):
    """FastAPI, with submit and wait taken past its layers (see `corral.api.fast_lane`)."""

    max_body = 8 * 1024 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = fast_lane.match(scope)
            if route is not None:
                scope["app"] = self  # what Starlette sets: routes find the coordinator by it
                await fast_lane.serve(scope, receive, send, route, self.max_body, error_response)
                return
        await super().__call__(scope, receive, send)


def error_response(exc: CorralError) -> JSONResponse:
    """Every CorralError, as every route answers it: its type, message, field and problems."""
    error: dict[str, Any] = {"type": type(exc).__name__, "message": exc.message}
    if isinstance(exc, InvalidInput) and exc.field:
        error["field"] = exc.field
    if isinstance(exc, InvalidRunSpec):
        error["problems"] = [{"field": f, "message": m} for f, m in exc.problems]
    return JSONResponse({"error": error}, status_code=exc.status)


def create_app(
    coordinator: Coordinator,
    *,
    max_body: int = CorralAPI.max_body,
    lifespan: Lifespan | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def _no_lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    app = CorralAPI(
        title="corral",
        version="0.1.0",
        description="Run jobs on a fleet of machines and keep track of every one.",
        lifespan=lifespan or _no_lifespan,
        docs_url="/api/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
    )
    app.state.coordinator = coordinator
    app.max_body = max_body
    for router in (
        runs.router,
        workers.router,
        tokens.router,
        tasks.router,
        objects.router,
        hosts.router,
        shared.router,
        dataflow.router,
    ):
        # the routes themselves, not an included router: FastAPI resolves an included
        # router's routes again on every request, which costs more than most handlers
        app.router.routes.extend(router.routes)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def scrape() -> PlainTextResponse:
        body, content_type = metrics.render(coordinator)
        return PlainTextResponse(body, media_type=content_type)

    @app.exception_handler(CorralError)
    async def corral_error(_request: Request, exc: CorralError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            field = ".".join(loc)
            msg = err.get("msg", "invalid")
            if err.get("type") == "extra_forbidden":
                msg = "unknown field"
            elif err.get("type") == "json_invalid":
                msg = f"malformed JSON: {err.get('ctx', {}).get('error', msg)}"
            problems.append({"field": field, "message": msg})
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        message = "; ".join(
            f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in problems
        )
        return JSONResponse(
            {
                "error": {
                    "type": "InvalidInput",
                    "message": message,
                    "field": first["field"],
                    "problems": problems,
                }
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and (page := dashboard.missing_page(request)) is not None:
            return page
        return JSONResponse(
            {"error": {"type": "HTTPError", "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    dashboard.mount(app)
    # objects are streamed in under a cap of their own (max_object_size), never buffered
    app.add_middleware(BodyLimit, max_body=max_body, exempt=("/api/v1/objects/",))
    return app
