"""The dashboard's routes against the app: login, CSRF, readers, project isolation, escaping."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import pytest
from integration_helpers import join, spec

from corral.app import create_app
from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.dashboard.sessions import COOKIE
from corral.domain.models import Upload

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
    )
    from fastapi.testclient import TestClient


@pytest.fixture
def engine() -> str:
    """The dashboard reads through the coordinator: SQLite is enough here."""
    return "sqlite"


@pytest.fixture
def app_client(coord: Coordinator) -> Iterator[TestClient]:
    with TestClient(create_app(coord), follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def login(client: TestClient, secret: str) -> str:
    """Log in with a token; returns the session's CSRF token."""
    form = client.get("/login")
    assert form.status_code == 200
    answer = client.post(
        "/login", data={"csrf": csrf_of(form.text), "token": secret, "next": "/runs"}
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/runs"
    return csrf_of(client.get("/runs").text)


def token(coord: Coordinator, admin: Principal, kind: str, project: str) -> str:
    return coord.create_token(admin, kind, project)[1]


def test_pages_need_a_login(app_client: TestClient) -> None:
    answer = app_client.get("/runs?state=failed")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fruns%3Fstate%3Dfailed"
    assert app_client.get("/").headers["location"].startswith("/login")
    assert app_client.get("/runs/stream").status_code == 401
    assert app_client.post("/runs/1/cancel", data={"csrf": "x"}).status_code == 401


def test_login_sets_a_strict_httponly_cookie(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    secret = token(coord, admin, "submitter", "team-a")
    form = app_client.get("/login")
    answer = app_client.post(
        "/login", data={"csrf": csrf_of(form.text), "token": secret, "next": "//evil.example"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/runs"  # never to another site
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is Secure
    assert secret not in cookie
    page = app_client.get("/runs")
    assert page.status_code == 200 and "submitter of team-a" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_bad_logins_are_refused(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    form = app_client.get("/login")
    csrf = csrf_of(form.text)
    bad = app_client.post("/login", data={"csrf": csrf, "token": "crl_nope"})
    assert bad.status_code == 401 and "Unknown or revoked token" in bad.text
    assert COOKIE not in app_client.cookies
    # the login form's own CSRF value must match its cookie
    secret = token(coord, admin, "reader", "team-a")
    assert app_client.post("/login", data={"csrf": "forged", "token": secret}).status_code == 403
    join_secret = coord.create_token(admin, "join")[1]
    form = app_client.get("/login")
    refused = app_client.post("/login", data={"csrf": csrf_of(form.text), "token": join_secret})
    assert refused.status_code == 403 and "join token cannot open the dashboard" in refused.text


def test_posts_need_the_csrf_token(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    run = coord.submit(admin, spec({"a": {"command": "sleep 1"}}, project="default"))
    csrf = login(app_client, coord.create_token(admin, "admin")[1])
    for data in ({}, {"csrf": ""}, {"csrf": csrf + "x"}):
        answer = app_client.post(f"/runs/{run.id}/cancel", data=data)
        assert answer.status_code == 403, data
        assert "CSRF" in answer.text
    assert coord.store.runs.get(run.id).state.value == "queued"  # nothing changed
    done = app_client.post(f"/runs/{run.id}/cancel", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/runs/{run.id}"
    assert coord.store.runs.get(run.id).state.value == "canceled"
    rerun = app_client.post(f"/runs/{run.id}/rerun", data={"csrf": csrf, "failed": "1"})
    assert rerun.status_code == 303
    assert coord.store.runs.job(run.id, "a").state.value == "queued"


def test_a_reader_sees_no_buttons_and_cannot_act(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    secret = token(coord, admin, "reader", "default")
    run = coord.submit(admin, spec({"a": {"command": "true"}}, project="default"))
    join(coord, admin, "w1")
    csrf = login(app_client, secret)
    page = app_client.get(f"/runs/{run.id}")
    assert page.status_code == 200 and "read-only" in page.text
    assert "Cancel run" not in page.text and "Rerun" not in page.text
    assert "Cancel job" not in app_client.get(f"/runs/{run.id}/jobs/a").text
    workers = app_client.get("/workers")
    assert workers.status_code == 200 and "w1" in workers.text and "Drain" not in workers.text
    for path in (f"/runs/{run.id}/cancel", f"/runs/{run.id}/jobs/a/cancel", "/workers/w1/drain"):
        answer = app_client.post(path, data={"csrf": csrf})
        assert answer.status_code == 403, path
    assert coord.store.runs.get(run.id).state.value == "queued"
    assert coord.store.workers.by_name("w1").draining is False


def test_an_admin_drains_and_resumes(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    join(coord, admin, "w1")
    csrf = login(app_client, coord.create_token(admin, "admin")[1])
    assert "Drain" in app_client.get("/workers").text
    assert app_client.post("/workers/w1/drain", data={"csrf": csrf}).status_code == 303
    assert coord.store.workers.by_name("w1").draining is True
    assert "Resume" in app_client.get("/workers").text
    assert app_client.post("/workers/w1/resume", data={"csrf": csrf}).status_code == 303
    assert coord.store.workers.by_name("w1").draining is False
    assert app_client.post("/workers/nobody/drain", data={"csrf": csrf}).status_code == 404


def test_one_project_sees_nothing_of_another(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    coord.store.projects.create("team-b", command=True, task=True, code=False)
    a_secret = token(coord, admin, "submitter", "team-a")
    token(coord, admin, "submitter", "team-b")
    secret_run = coord.submit(
        admin, spec({"hidden-job": {"command": "true"}}, name="secret-build", project="team-b")
    )
    worker = join(coord, admin, "w1")
    coord.lease(worker.id, 1)  # the worker now holds team-b's job
    csrf = login(app_client, a_secret)
    rid = secret_run.id
    for path in (
        f"/runs/{rid}",
        f"/runs/{rid}/jobs/hidden-job",
        f"/runs/{rid}/jobs/hidden-job/log.txt",
        f"/runs/{rid}/stream",
        f"/runs/{rid}/jobs/hidden-job/stream",
    ):
        answer = app_client.get(path)
        assert answer.status_code == 404, path
        assert "secret-build" not in answer.text and "hidden-job" not in answer.text
    for path in ("/runs", "/matrix", "/workers"):
        answer = app_client.get(path)
        assert answer.status_code == 200, path
        assert "secret-build" not in answer.text and "hidden-job" not in answer.text, path
    # asked by name, the matrix echoes the name asked for, and nothing of the run
    asked = app_client.get("/matrix?name=secret-build")
    assert asked.status_code == 200 and "hidden-job" not in asked.text
    assert f"/runs/{secret_run.id}" not in asked.text
    assert app_client.get("/runs?project=team-b").status_code == 404
    assert app_client.post(f"/runs/{rid}/cancel", data={"csrf": csrf}).status_code == 404
    assert coord.store.runs.get(rid).state.value == "running"


def test_a_log_is_escaped_and_colours_are_parsed(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    run = coord.submit(admin, spec({"evil": {"command": "true"}}))
    worker = join(coord, admin, "w1")
    lease = coord.lease(worker.id, 1)[0]
    coord.start(worker.id, [(lease.attempt_id, lease.token, 0.0)])
    evil = (
        "<script>alert(1)</script>\n"
        '\x1b[1;31mred "bold"\x1b[0m plain\n'
        "\x1b]0;title\x07\x1b[2J<img src=x onerror=alert(2)>\n"
    )
    coord.append_log(
        worker.id,
        [
            Upload(lease.attempt_id, lease.token, 0, "stdout", 1.0, evil),
            Upload(lease.attempt_id, lease.token, 1, "stderr", 1.1, "fatal: it broke\n"),
        ],
    )
    login(app_client, coord.create_token(admin, "admin")[1])
    page = app_client.get(f"/runs/{run.id}/jobs/evil")
    assert page.status_code == 200
    body = page.text
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(2)&gt;" in body
    assert '<span class="b c-red">red &quot;bold&quot;</span> plain' in body
    assert "\x1b" not in body and "title" not in body.split('id="log"')[1]
    assert '<span class="ln s-stderr" id="first-error">fatal: it broke' in body
    raw = app_client.get(f"/runs/{run.id}/jobs/evil/log.txt")
    assert raw.status_code == 200 and raw.text == evil + "fatal: it broke\n"
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert raw.headers["x-content-type-options"] == "nosniff"


def test_run_matrix_and_job_pages_show_what_people_ask(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    runs = [
        coord.submit(
            admin,
            spec(
                {"build": {"command": "true"}, "test": {"command": "true", "needs": ["build"]}},
                name="nightly",
                params={"rev": f"r{i}"},
            ),
        )
        for i in range(3)
    ]
    coord.submit(admin, spec({"other": {"command": "true"}}, name="other"))
    login(app_client, coord.create_token(admin, "admin")[1])
    page = app_client.get(f"/runs/{runs[0].id}")
    assert page.status_code == 200
    assert "build" in page.text and "test" in page.text and "queued" in page.text
    assert "blocked" in page.text and "rev=r0" in page.text
    job = app_client.get(f"/runs/{runs[0].id}/jobs/test")
    assert "Not running yet:" in job.text
    matrix = app_client.get("/matrix?name=nightly")
    assert matrix.status_code == 200
    for r in runs:
        assert f'href="/runs/{r.id}/jobs/build"' in matrix.text
    assert "other" not in matrix.text.split('id="matrix-live"')[1]
    listing = app_client.get("/runs?name=nightly")
    assert listing.text.count('href="/runs/') >= 3 and "/runs/4" not in listing.text
    assert app_client.get("/runs?state=bogus").status_code == 422
    assert app_client.get("/runs/999999").status_code == 404
    assert app_client.get(f"/runs/{runs[0].id}/jobs/build?attempt=x").status_code == 422


def test_runs_are_paged_by_id(app_client: TestClient, coord: Coordinator, admin: Principal) -> None:
    for i in range(55):
        coord.submit(admin, spec({"a": {"command": "true"}}, name=f"r{i}"))
    login(app_client, coord.create_token(admin, "admin")[1])
    first = app_client.get("/runs").text
    assert ">#55<" in first and ">#6<" in first and ">#5<" not in first
    older = re.search(r'href="/runs\?([^"]+)" rel="next"', first)
    assert older and "before=6" in older.group(1)
    second = app_client.get("/runs?" + older.group(1).replace("&amp;", "&")).text
    assert ">#5<" in second and ">#1<" in second and ">#6<" not in second
    assert 'rel="next"' not in second


def test_logout_and_revocation_end_the_session(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    tok, secret = coord.create_token(admin, "reader", "default")
    csrf = login(app_client, secret)
    assert app_client.post("/logout", data={"csrf": csrf}).status_code == 303
    app_client.cookies.clear()
    assert app_client.get("/runs").status_code == 303
    login(app_client, secret)
    coord.revoke_token(admin, tok.id)
    assert app_client.get("/runs").status_code == 303


def test_the_cookie_is_secure_over_tls(coord: Coordinator, admin: Principal) -> None:
    with TestClient(
        create_app(coord), base_url="https://testserver", follow_redirects=False
    ) as client:
        form = client.get("/login")
        answer = client.post(
            "/login",
            data={"csrf": csrf_of(form.text), "token": coord.create_token(admin, "admin")[1]},
        )
        assert answer.status_code == 303
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert "Secure" in cookie and "HttpOnly" in cookie


def test_outputs_download_with_the_session_and_only_in_their_project(
    store: object, admin: Principal, tmp_path: object
) -> None:
    import hashlib
    from pathlib import Path

    from corral.objects.backend import open_backend
    from corral.store import Store

    assert isinstance(store, Store) and isinstance(tmp_path, Path)
    backend = open_backend(str(tmp_path / "objects"), tmp_path, None)
    coord = Coordinator(store, objects=backend)
    data = b"model weights\n"
    sha = hashlib.sha256(data).hexdigest()
    writer = token(coord, admin, "submitter", "team-a")
    proj, upload = coord.begin_upload(coord.authenticate(writer), sha, None, len(data))
    upload.feed(data)
    coord.finish_upload(proj, upload)
    with TestClient(create_app(coord), follow_redirects=False) as client:
        assert client.get(f"/objects/{sha}").status_code == 303  # log in first
        login(client, token(coord, admin, "reader", "team-a"))
        got = client.get(f"/objects/{sha}", params={"name": "out/model.bin"})
        assert got.status_code == 200 and got.content == data
        assert got.headers["content-disposition"] == 'attachment; filename="model.bin"'
        assert client.get(f"/objects/{sha}", params={"name": "../x"}).status_code == 422
    with TestClient(create_app(coord), follow_redirects=False) as other:
        login(other, token(coord, admin, "reader", "team-b"))
        assert other.get(f"/objects/{sha}").status_code == 404


def test_a_browser_at_a_path_with_no_page_gets_a_page_saying_so(app_client: TestClient) -> None:
    html = {"accept": "text/html,application/xhtml+xml"}
    answer = app_client.get("/no/such/<b>page</b>", headers=html)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "Not found" in answer.text and "<b>page</b>" not in answer.text  # escaped
    assert 'href="/runs"' in answer.text
    # the API, and a client that does not ask for a page, keep their JSON
    for path, headers in (("/api/v1/nope", html), ("/no/such/page", {})):
        answer = app_client.get(path, headers=headers)
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == "Not Found"


# execnet leaves the pipes of an ssh that could not connect to the garbage collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_workers_page_says_whether_each_fleet_host_can_be_reached(
    app_client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    import shutil

    from corral.fleet.hosts import Fleet
    from corral.fleet.inventory import Host, Inventory
    from corral.fleet.transport import Unreachable

    if shutil.which("ssh") is None:
        pytest.skip("no ssh client here (Debian openssh-client)")
    down = Host(site="down1", ssh="nobody@127.0.0.1", port=1)  # nothing listens on port 1
    fleet = Fleet(coord, Inventory((down, Host(site="later1", ssh="nobody@127.0.0.1"))))
    fleet.start()
    try:
        with pytest.raises(Unreachable):
            fleet.transports["down1"].gateway()  # what a job for it would have tried
        app_client.app.state.fleet = fleet  # type: ignore[attr-defined]
        login(app_client, coord.create_token(admin, "admin")[1])
        page = app_client.get("/workers").text
        # a connected host: what its Python said of itself when it connected
        up = fleet.transports["later1"]
        up._gateway = _Connected()  # type: ignore[assignment]
        up._about = {"python": "3.11.7", "containment": "cgroup v1"}
        try:
            connected = app_client.get("/workers").text
        finally:
            up._gateway = None
    finally:
        fleet.stop()
    assert "connected, Python 3.11.7, jobs end by cgroup v1" in connected
    rows = {}
    for row in page.split("<tr")[1:]:
        found = re.search(r"<strong>([^<]+)</strong>", row)
        if found:
            rows[found.group(1)] = row
    assert "over SSH: nobody@127.0.0.1:1" in rows["down1"]
    assert "unreachable" in rows["down1"] and "Connection refused" in rows["down1"]
    assert "not connected yet" in rows["later1"]


class _Connected:
    """Stands for a live execnet gateway, as far as a host's state looks at one."""

    def hasreceiver(self) -> bool:
        return True
