"""The dashboard's pages, actions and live streams (Server-Sent Events), served at `/`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import wraps
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from corral import events
from corral.api.deps import call, coordinator
from corral.api.hosts import fleet_of
from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.dashboard import views
from corral.dashboard.sessions import COOKIE, LOGIN_COOKIE, Session, Sessions, same
from corral.errors import CorralError, Forbidden, InvalidInput, NotFound, Unauthorized
from corral.fleet.hosts import Fleet, host_json
from corral.store.pages import by_job

HERE = Path(__file__).parent
PAGE_SIZE = 50
MATRIX_ROWS = 20
MAX_FORM = 64 * 1024
# A stream ends after this long and the page opens a new one: a server that stops is never
# held up by open pages, and a page never holds a connection for hours.
STREAM_SECONDS = 55.0
LOG_PAGE = 2000  # chunks per read of a log
LOG_PAGE_LIMIT = 20_000  # chunks shown on a job page at first; the raw download has them all
RUNS_TOPIC = "dashboard:runs"  # any run changed (the runs page wakes on it)
SECURITY_HEADERS = {
    # no script but our own file: escaped output is the first defence, this the second
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ACTORS = ("admin", "submitter")
VIEWERS = ("admin", "submitter", "reader")

P = ParamSpec("P")
router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals.update(
    duration=views.duration,
    ago=views.ago,
    clock=views.clock,
    ordered_counts=views.ordered_counts,
    size=views.size,
    resources=views.resources,
    payload_inputs=views.payload_inputs,
    quote=lambda s: quote(str(s), safe=""),
    RUN_STATES=views.RUN_STATES,
)


class Viewer(NamedTuple):
    who: Principal
    session: Session
    sid: str

    @property
    def can_act(self) -> bool:
        return self.who.kind in ACTORS

    @property
    def can_drain(self) -> bool:
        return self.who.is_admin


class NeedLogin(Exception):
    """No live session: pages send the browser to the login page."""


def mount(app: FastAPI) -> None:
    """Serve the dashboard from `app` (whose state holds the coordinator)."""
    coord: Coordinator = app.state.coordinator
    app.state.dashboard_sessions = Sessions()
    hub = coord.hub

    def runs_changed(topic: str) -> None:
        if topic.startswith("run:"):
            hub.notify(RUNS_TOPIC, forward=False)

    hub.listen(runs_changed)
    app.router.routes.extend(router.routes)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")


def sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.dashboard_sessions
    return found


async def viewer(request: Request) -> Viewer:
    """The person behind this request, authenticated again through the coordinator."""
    sid = request.cookies.get(COOKIE)
    session = sessions(request).get(sid)
    if session is None or sid is None:
        raise NeedLogin
    coord = coordinator(request)
    who = coord.cached_principal(session.secret)
    if who is None:
        try:
            who = await run_in_threadpool(coord.authenticate, session.secret)
        except Unauthorized:
            sessions(request).end(sid)  # the token was revoked: so is the session
            raise NeedLogin from None
    return Viewer(who, session, sid)


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("now", time.time())
    return HTMLResponse(
        templates.get_template(template).render(**context), status, headers=SECURITY_HEADERS
    )


def fragment(template: str, **context: Any) -> str:
    context.setdefault("now", time.time())
    return templates.get_template(template).render(**context)


def missing_page(request: Request) -> HTMLResponse | None:
    """A browser's GET of a path with no page (a typo, an old link): the dashboard's own
    not-found page rather than the API's JSON; None for anything else."""
    if (
        request.method != "GET"
        or request.url.path.startswith("/api/")
        or "text/html" not in request.headers.get("accept", "")
    ):
        return None
    message = f"there is no page at {request.url.path}"
    return render("error.html", 404, code=404, message=message, me=None)


def safe_next(value: str | None) -> str:
    """Only a path on this server: never another site (`//host`, `/\\host`, `https:`)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/runs"
    return value


def page(
    fn: Callable[P, Awaitable[Response]],
) -> Callable[P, Awaitable[Response]]:
    """A page: errors as a page of their own, and a missing login as a way to the login page."""

    @wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        request = kwargs["request"]
        assert isinstance(request, Request)
        try:
            return await fn(*args, **kwargs)
        except NeedLogin:
            if request.method != "GET":
                return PlainTextResponse("log in first", 401, headers=SECURITY_HEADERS)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                "/login?" + urlencode({"next": target}), 303, headers=SECURITY_HEADERS
            )
        except CorralError as exc:
            return render("error.html", exc.status, code=exc.status, message=exc.message, me=None)

    return wrapper


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form, capped; one value per field."""
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise InvalidInput("the form is too large")
    try:
        parsed = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("malformed form") from None
    return {k: v[0] for k, v in parsed.items()}


async def acting(request: Request) -> tuple[Viewer, dict[str, str]]:
    """A POST from a page: a live session, and the form's CSRF token matching the session's."""
    me = await viewer(request)
    fields = await form(request)
    if not same(me.session.csrf, fields.get("csrf")):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and try again")
    return me, fields


def back(path: str) -> RedirectResponse:
    return RedirectResponse(path, 303, headers=SECURITY_HEADERS)


# -- login ----------------------------------------------------------------------------------


@router.get("/")
@page
async def home(request: Request) -> Response:
    await viewer(request)
    return back("/runs")


@router.get("/login")
@page
async def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next, "", 200)


def _login_page(request: Request, next: str | None, error: str, status: int) -> Response:
    import secrets

    value = secrets.token_urlsafe(24)
    response = render("login.html", status, csrf=value, next=safe_next(next), error=error, me=None)
    response.set_cookie(
        LOGIN_COOKIE,
        value,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/login")
@page
async def login(request: Request) -> Response:
    fields = await form(request)
    if not same(request.cookies.get(LOGIN_COOKIE, ""), fields.get("csrf")):
        return _login_page(request, fields.get("next"), "The form expired: try again.", 403)
    secret = fields.get("token", "").strip()
    coord = coordinator(request)
    try:
        who = await run_in_threadpool(coord.authenticate, secret) if secret else None
    except Unauthorized:
        who = None
    if who is None:
        return _login_page(request, fields.get("next"), "Unknown or revoked token.", 401)
    if who.kind not in VIEWERS:
        return _login_page(
            request,
            fields.get("next"),
            f"A {who.kind} token cannot open the dashboard: use an admin, submitter or "
            "reader token.",
            403,
        )
    sid, _ = sessions(request).create(secret)
    response = back(safe_next(fields.get("next")))
    response.set_cookie(
        COOKIE,
        sid,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
@page
async def logout(request: Request) -> Response:
    me, _ = await acting(request)
    sessions(request).end(me.sid)
    response = back("/login")
    response.delete_cookie(COOKIE, path="/")
    return response


# -- runs -----------------------------------------------------------------------------------


class RunFilter(NamedTuple):
    project: str
    state: str
    name: str
    before: int | None

    @classmethod
    def of(cls, params: Mapping[str, str]) -> RunFilter:
        state = params.get("state", "")
        if state and state not in views.RUN_STATES:
            raise InvalidInput(f"expected a state among {', '.join(views.RUN_STATES)}", "state")
        before = params.get("before", "")
        if before and not before.isdigit():
            raise InvalidInput("expected a run id", "before")
        return cls(
            params.get("project", "").strip(),
            state,
            params.get("name", "").strip(),
            int(before) if before else None,
        )

    def query(self, **change: Any) -> str:
        values = {**self._asdict(), **change}
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def _runs_context(coord: Coordinator, me: Viewer, f: RunFilter) -> dict[str, Any]:
    found = coord.runs(
        me.who,
        project=f.project or None,
        state=f.state or None,
        name=f.name or None,
        before=f.before,
        limit=PAGE_SIZE + 1,
    )
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    older = f.query(before=found[-1].id) if more and found else None
    return {"runs": found, "filter": f, "older": older, "me": me}


@router.get("/runs")
@page
async def runs_page(request: Request) -> Response:
    me = await viewer(request)
    f = RunFilter.of(request.query_params)
    ctx = await call(request, _runs_context, coordinator(request), me, f)
    stream = "/runs/stream?" + f.query() if f.before is None else ""
    return render("runs.html", **ctx, stream=stream, page="runs")


@router.get("/runs/stream")
async def runs_stream(request: Request) -> Response:
    async def changes(me: Viewer) -> AsyncIterator[str]:
        f = RunFilter.of(request.query_params)
        coord = coordinator(request)
        async for _ in _wakeups(request, coord, lambda: RUNS_TOPIC, pause=1.0):
            ctx = await call(request, _runs_context, coord, me, f)
            yield _event("replace", {"target": "runs-live", "html": fragment("_runs.html", **ctx)})

    return await _stream(request, changes)


@router.get("/runs/{run_id}")
@page
async def run_page(request: Request, run_id: int) -> Response:
    me = await viewer(request)
    ctx = await call(request, _run_context, coordinator(request), me, run_id)
    return render("run.html", **ctx, page="runs")


def _run_context(coord: Coordinator, me: Viewer, run_id: int) -> dict[str, Any]:
    run, jobs = coord.jobs(me.who, str(run_id))
    outputs = coord.outputs(me.who, str(run.id))
    return {
        "run": run,
        "views": jobs,
        "depths": views.depths([v.job for v in jobs]),
        "outputs": outputs,
        "outputs_by_job": by_job(outputs),
        "labels": {v.job.id: v.job.label for v in jobs},
        "me": me,
    }


@router.get("/runs/{run_id}/stream")
async def run_stream(request: Request, run_id: int) -> Response:
    async def changes(me: Viewer) -> AsyncIterator[str]:
        coord = coordinator(request)
        async for _ in _wakeups(request, coord, lambda: events.run_topic(run_id), pause=0.2):
            ctx = await call(request, _run_context, coord, me, run_id)
            yield _event("replace", {"target": "run-live", "html": fragment("_run.html", **ctx)})

    return await _stream(request, changes)


@router.post("/runs/{run_id}/cancel")
@page
async def cancel_run(request: Request, run_id: int) -> Response:
    me, _ = await acting(request)
    await run_in_threadpool(coordinator(request).cancel, me.who, str(run_id))
    return back(f"/runs/{run_id}")


@router.post("/runs/{run_id}/rerun")
@page
async def rerun_run(request: Request, run_id: int) -> Response:
    me, fields = await acting(request)
    failed = fields.get("failed", "") in ("1", "true", "yes")
    await run_in_threadpool(coordinator(request).rerun, me.who, str(run_id), failed)
    return back(f"/runs/{run_id}")


# -- jobs -----------------------------------------------------------------------------------


def _job_context(
    coord: Coordinator, me: Viewer, run_id: int, label: str, number: int | None
) -> dict[str, Any]:
    run, view = coord.job(me.who, str(run_id), label)
    attempt = view.attempts[-1] if view.attempts else None
    if number is not None:
        chosen = [a for a in view.attempts if a.number == number]
        if not chosen:
            raise NotFound(f"job {label!r} has no attempt {number}")
        attempt = chosen[0]
    outputs = coord.outputs(me.who, str(run.id), view.job.label)
    return {
        "run": run,
        "view": view,
        "job": view.job,
        "attempt": attempt,
        "latest": attempt is None or attempt is view.attempts[-1],
        "outputs": outputs,
        "me": me,
    }


def _parse_attempt(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise InvalidInput("expected an attempt number", "attempt")
    return int(value)


def _job_path(run_id: int, label: str) -> str:
    return f"/runs/{run_id}/jobs/{quote(label, safe='[]')}"


@router.get("/runs/{run_id}/jobs/{label}")
@page
async def job_page(request: Request, run_id: int, label: str) -> Response:
    me = await viewer(request)
    coord = coordinator(request)
    number = _parse_attempt(request.query_params.get("attempt"))
    ctx = await call(request, _job_context, coord, me, run_id, label, number)
    attempt = ctx["attempt"]
    log = views.LogView()
    lines: list[views.Line] = []
    cursor = -1
    truncated = False
    if attempt is not None:
        chunks = await call(request, _read_log, coord, attempt.id, -1, LOG_PAGE_LIMIT)
        truncated = len(chunks) >= LOG_PAGE_LIMIT
        lines = log.feed(chunks)
        cursor = chunks[-1].seq if chunks else -1
    path = _job_path(run_id, ctx["job"].label)
    query = {"after": cursor, "err": int(log.found_error), "shown": attempt.id if attempt else 0}
    if number is not None:
        query["attempt"] = number
    return render(
        "job.html",
        **ctx,
        lines=lines,
        truncated=truncated,
        path=path,
        log_stream=f"{path}/stream?{urlencode(query)}" if not truncated else "",
        found_error=log.found_error,
        page="runs",
    )


def _read_log(coord: Coordinator, attempt_id: int, after: int, limit: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < limit:
        chunks = coord.store.logs.read(attempt_id, after, min(LOG_PAGE, limit - len(out)))
        out.extend(chunks)
        if len(chunks) < LOG_PAGE:
            break
        after = chunks[-1].seq
    return out


@router.get("/runs/{run_id}/jobs/{label}/stream")
async def job_stream(request: Request, run_id: int, label: str) -> Response:
    params = request.query_params
    number = _parse_attempt(params.get("attempt"))
    given = request.headers.get("last-event-id") or params.get("after", "-1")
    try:
        after = int(given)
    except ValueError:
        raise InvalidInput("expected a log position", "after") from None
    coord = coordinator(request)

    async def changes(me: Viewer) -> AsyncIterator[str]:
        nonlocal after
        ctx = await call(request, _job_context, coord, me, run_id, label, number)
        attempt = ctx["attempt"]
        if attempt is not None and params.get("shown") != str(attempt.id):
            attempt = None  # it began after the page was drawn: switch to it below
        log = views.LogView(found_error=params.get("err") == "1")
        run_topic = events.run_topic(run_id)
        seen_run = coord.hub.version(run_topic)
        first = True
        deadline = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < deadline and not await request.is_disconnected():
            topic = events.attempt_topic(attempt.id) if attempt else run_topic
            version = coord.hub.version(topic)
            run_version = coord.hub.version(run_topic)
            if attempt is not None:
                chunks = await call(request, coord.store.logs.read, attempt.id, after, LOG_PAGE)
                if chunks:
                    after = chunks[-1].seq
                    html = fragment("_lines.html", lines=log.feed(chunks))
                    yield _event("append", {"target": "log", "html": html}, after)
                    if len(chunks) == LOG_PAGE:
                        continue  # more is there already
            if first or run_version != seen_run:
                first = False
                seen_run = run_version
                ctx = await call(request, _job_context, coord, me, run_id, label, number)
                if (
                    number is None
                    and ctx["attempt"] is not None
                    and (attempt is None or ctx["attempt"].id != attempt.id)
                ):
                    # a new attempt began (or the first): the page follows the newest one
                    attempt, after, log = ctx["attempt"], -1, views.LogView()
                    title = fragment("_log_title.html", **ctx, path=_job_path(run_id, label))
                    yield _event("replace", {"target": "log-title", "html": title})
                    yield _event("replace", {"target": "log", "html": ""})
                yield _event(
                    "replace", {"target": "job-live", "html": fragment("_job.html", **ctx)}
                )
            await coord.hub.wait_async(topic, version, 1.0)
        shown = attempt.id if attempt else 0
        yield _event("bye", {"after": after, "err": int(log.found_error), "shown": shown})

    return await _stream(request, changes)


@router.get("/runs/{run_id}/jobs/{label}/log.txt")
@page
async def raw_log(request: Request, run_id: int, label: str) -> Response:
    me = await viewer(request)
    coord = coordinator(request)
    number = _parse_attempt(request.query_params.get("attempt"))
    ctx = await call(request, _job_context, coord, me, run_id, label, number)
    attempt = ctx["attempt"]
    chunks = await run_in_threadpool(_read_log, coord, attempt.id, -1, 10**9) if attempt else []
    body = "".join(c.data for c in chunks)
    name = f"run{run_id}-{ctx['job'].label}-attempt{attempt.number if attempt else 0}.log"
    safe_name = "".join(ch if ch.isalnum() or ch in "-_.[]" else "_" for ch in name)
    return PlainTextResponse(
        body,
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{safe_name}"',
        },
    )


@router.get("/objects/{sha256}")
@page
async def download_object(request: Request, sha256: str, name: str = "") -> Response:
    """An output to download: a browser sends the session cookie, not a bearer token."""
    from corral.api.objects import read_object
    from corral.objects.names import check_name

    me = await viewer(request)
    answer = await read_object(request, me.who, sha256, None, body=True)
    if name:
        filename = check_name(name).rsplit("/", 1)[-1]
        safe = "".join(ch if ch.isalnum() or ch in "-_.[]" else "_" for ch in filename)
        answer.headers["content-disposition"] = f'attachment; filename="{safe}"'
    answer.headers.update(SECURITY_HEADERS)
    return answer


@router.post("/runs/{run_id}/jobs/{label}/cancel")
@page
async def cancel_job(request: Request, run_id: int, label: str) -> Response:
    me, _ = await acting(request)
    await run_in_threadpool(coordinator(request).cancel, me.who, str(run_id), label)
    return back(_job_path(run_id, label))


# -- the matrix -----------------------------------------------------------------------------


def _matrix_context(coord: Coordinator, me: Viewer, f: RunFilter) -> dict[str, Any]:
    names = coord.run_names(me.who)
    name = f.name or (names[0] if names else "")
    rows = (
        coord.matrix(
            me.who, name, project=f.project or None, before=f.before, limit=MATRIX_ROWS + 1
        )
        if name
        else []
    )
    more = len(rows) > MATRIX_ROWS
    rows = rows[:MATRIX_ROWS]
    return {
        "names": names if name in names or not name else [name, *names],
        "name": name,
        "rows": [(run, views.matrix_cells(jobs)) for run, jobs in rows],
        "columns": views.matrix_columns(rows),
        "filter": f,
        "older": f.query(name=name, before=rows[-1][0].id) if more else None,
        "me": me,
    }


@router.get("/matrix")
@page
async def matrix_page(request: Request) -> Response:
    me = await viewer(request)
    f = RunFilter.of(request.query_params)
    ctx = await call(request, _matrix_context, coordinator(request), me, f)
    stream = "/matrix/stream?" + f.query(name=ctx["name"]) if f.before is None else ""
    return render("matrix.html", **ctx, stream=stream, page="matrix")


@router.get("/matrix/stream")
async def matrix_stream(request: Request) -> Response:
    async def changes(me: Viewer) -> AsyncIterator[str]:
        f = RunFilter.of(request.query_params)
        coord = coordinator(request)
        async for _ in _wakeups(request, coord, lambda: RUNS_TOPIC, pause=1.0):
            ctx = await call(request, _matrix_context, coord, me, f)
            html = fragment("_matrix.html", **ctx)
            yield _event("replace", {"target": "matrix-live", "html": html})

    return await _stream(request, changes)


# -- workers --------------------------------------------------------------------------------


def _workers_context(coord: Coordinator, me: Viewer, fleet: Fleet | None) -> dict[str, Any]:
    now = time.time()
    return {
        "workers": [(w, w.state(now, coord.offline_after)) for w in coord.workers(me.who)],
        "busy": coord.busy_jobs(me.who),
        # a site's worker is online whenever the server is: whether its host can be reached
        # is the connection's to say
        "hosts": {h.site: host_json(h, s) for h, s in fleet.states()} if fleet else {},
        "me": me,
        "now": now,
    }


@router.get("/workers")
@page
async def workers_page(request: Request) -> Response:
    me = await viewer(request)
    ctx = await call(request, _workers_context, coordinator(request), me, fleet_of(request))
    return render("workers.html", **ctx, page="workers")


@router.get("/workers/stream")
async def workers_stream(request: Request) -> Response:
    async def changes(me: Viewer) -> AsyncIterator[str]:
        coord = coordinator(request)
        # busy slots follow the runs; last seen moves on its own: a wake-up at least every 5 s
        async for _ in _wakeups(request, coord, lambda: RUNS_TOPIC, pause=1.0, every=5.0):
            ctx = await call(request, _workers_context, coord, me, fleet_of(request))
            html = fragment("_workers.html", **ctx)
            yield _event("replace", {"target": "workers-live", "html": html})

    return await _stream(request, changes)


async def _drain(request: Request, name: str, draining: bool) -> Response:
    me, _ = await acting(request)
    await run_in_threadpool(coordinator(request).drain, me.who, name, draining)
    return back("/workers")


@router.post("/workers/{name}/drain")
@page
async def drain(request: Request, name: str) -> Response:
    return await _drain(request, name, True)


@router.post("/workers/{name}/resume")
@page
async def resume(request: Request, name: str) -> Response:
    return await _drain(request, name, False)


# -- streams --------------------------------------------------------------------------------


def _event(kind: str, data: Mapping[str, Any], event_id: int | None = None) -> str:
    # JSON holds no raw newline, so one data line carries the whole fragment
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _wakeups(
    request: Request,
    coord: Coordinator,
    topic: Callable[[], str],
    *,
    pause: float,
    every: float = 15.0,
) -> AsyncIterator[None]:
    """Yield now, then after each change of the topic (at most every `pause` seconds, and at
    least every `every` seconds), until the stream's time is up or the page went away."""
    deadline = time.monotonic() + STREAM_SECONDS
    while time.monotonic() < deadline and not await request.is_disconnected():
        version = coord.hub.version(topic())
        yield None
        await asyncio.sleep(pause)
        await coord.hub.wait_async(topic(), version, min(every, deadline - time.monotonic()))


async def _stream(request: Request, changes: Callable[[Viewer], AsyncIterator[str]]) -> Response:
    """An SSE response; the login and the first read are checked before it starts, so a page
    of another project answers 404 here as everywhere."""
    try:
        me = await viewer(request)
    except NeedLogin:
        return PlainTextResponse("log in first", 401, headers=SECURITY_HEADERS)
    source = changes(me)
    try:
        first = await anext(source)
    except CorralError as exc:
        return PlainTextResponse(exc.message, exc.status, headers=SECURITY_HEADERS)
    except StopAsyncIteration:
        first = ""

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        if first:
            yield first
        try:
            async for item in source:
                yield item
        except CorralError as exc:
            yield _event("gone", {"message": exc.message})

    headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
