"""The HTTP API on SQLite: bad input gets a clear 4xx naming the problem, and changes nothing."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from integration_helpers import join, spec, until
from pydantic import ValidationError
from sqlalchemy import func, select

from corral.api.schemas import WaitRunsBody
from corral.app import create_app
from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Report
from corral.store.tables import attempts, jobs, log_chunks, runs, tokens, workers

with warnings.catch_warnings():
    # starlette 1.x asks for `httpx2` for its TestClient; `httpx` still works. Only this
    # one message at import is let through; every other warning stays an error.
    warnings.filterwarnings(
        "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
    )
    from fastapi.testclient import TestClient

MAX_BODY = 4096


@pytest.fixture
def engine() -> str:
    """The API is one code path over the store: SQLite is enough here."""
    return "sqlite"


@pytest.fixture
def client(coord: Coordinator) -> Iterator[TestClient]:
    with TestClient(create_app(coord, max_body=MAX_BODY)) as c:
        yield c


@pytest.fixture
def admin_secret(coord: Coordinator) -> str:
    _, secret = coord.store.tokens.create("admin", "api-admin")
    return secret


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def counts(coord: Coordinator) -> dict[str, int]:
    with coord.store.db.read() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (runs, jobs, attempts, log_chunks, tokens, workers)
        }


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["message"]
    return dict(body["error"])


def submit(client: TestClient, secret: str, body: bytes | str | dict[str, Any]) -> Any:
    content = json.dumps(body) if isinstance(body, dict) else body
    return client.post(
        "/api/v1/runs",
        content=content,
        headers={**auth(secret), "Content-Type": "application/json"},
    )


GOOD = {"name": "r1", "jobs": {"x": {"command": "true"}}}


def test_a_good_submit(client: TestClient, coord: Coordinator, admin_secret: str) -> None:
    before = counts(coord)
    r = submit(client, admin_secret, GOOD)
    assert r.status_code == 201, r.text
    assert (r.json()["name"], r.json()["state"]) == ("r1", "queued")
    after = counts(coord)
    assert (after["runs"] - before["runs"], after["jobs"] - before["jobs"]) == (1, 1)
    got = client.get(f"/api/v1/runs/{r.json()['id']}", headers=auth(admin_secret))
    assert [j["name"] for j in got.json()["jobs"]] == ["x"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"jobs": {"x": {"command": "true"}}', "malformed JSON"),
        (b"", "empty"),
        (b'{"name": "\xc3\x28"}', "UTF-8"),
    ],
)
def test_malformed_json(
    client: TestClient, coord: Coordinator, admin_secret: str, body: bytes, words: str
) -> None:
    before = counts(coord)
    error = error_of(submit(client, admin_secret, body), 422)
    assert words in error["message"]
    assert counts(coord) == before


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"jobs": {"x": {"command": "true", "bogus": 1}}}, "jobs.x.bogus", "unknown field"),
        ({"bogus": 1, "jobs": {"x": {"command": "true"}}}, "bogus", "unknown field"),
        ({"jobs": {"x": {"command": 5}}}, "jobs.x.command", "shell string"),
        ({"jobs": {"x": {"command": "true", "retries": "2"}}}, "jobs.x.retries", "whole number"),
        ({"jobs": {"x": {"command": "true", "timeout": "soon"}}}, "jobs.x.timeout", "duration"),
        (
            {"jobs": {"x": {"command": "true", "on": {"platform": ["linux"]}}}},
            "jobs.x.on",
            "platform",
        ),
        ({"jobs": ["x"]}, "jobs", "table of jobs"),
        (
            {
                "jobs": {
                    "a": {"command": "true", "needs": ["b"]},
                    "b": {"command": "true", "needs": ["a"]},
                }
            },
            "jobs.a.needs",
            "cycle",
        ),
        ({"jobs": {"a": {"command": "true", "needs": ["zz"]}}}, "jobs.a.needs", "unknown job"),
        ({"jobs": {"t": {"task": "build"}}}, "jobs.t.task", "unknown task"),
    ],
)
def test_a_bad_run_spec_names_the_field(
    client: TestClient,
    coord: Coordinator,
    admin_secret: str,
    body: dict[str, Any],
    field: str,
    words: str,
) -> None:
    before = counts(coord)
    error = error_of(submit(client, admin_secret, body), 422)
    assert error["type"] == "InvalidRunSpec"
    assert error["field"] == field
    assert words in error["message"]
    assert error["message"].startswith(f"{field}: ")
    assert error["problems"][0]["field"] == field
    assert counts(coord) == before


def test_several_problems_come_together(
    client: TestClient, coord: Coordinator, admin_secret: str
) -> None:
    body = {"jobs": {"x": {"command": 5, "bogus": 1}, "y": {"command": "true", "when": "x"}}}
    error = error_of(submit(client, admin_secret, body), 422)
    assert [p["field"] for p in error["problems"]] == [
        "jobs.x.bogus",
        "jobs.x.command",
        "jobs.y.when",
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer crl_not-a-real-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "basic", "empty"],
)
def test_no_valid_token_is_401(
    client: TestClient, coord: Coordinator, headers: dict[str, str]
) -> None:
    before = counts(coord)
    r = client.post("/api/v1/runs", json=GOOD, headers=headers)
    assert error_of(r, 401)["type"] == "Unauthorized"
    assert error_of(client.get("/api/v1/runs", headers=headers), 401)
    assert counts(coord) == before


def test_a_revoked_token_is_401(client: TestClient, coord: Coordinator, admin_secret: str) -> None:
    token, secret = coord.store.tokens.create("admin", "short-lived")
    assert client.get("/api/v1/runs", headers=auth(secret)).status_code == 200
    r = client.delete(f"/api/v1/tokens/{token.id}", headers=auth(admin_secret))
    assert r.status_code == 200
    error_of(client.get("/api/v1/runs", headers=auth(secret)), 401)


def test_an_oversize_body_is_413(client: TestClient, coord: Coordinator, admin_secret: str) -> None:
    before = counts(coord)
    big = {"name": "big", "jobs": {"x": {"command": "echo " + "x" * (2 * MAX_BODY)}}}
    error = error_of(submit(client, admin_secret, big), 413)
    assert error["type"] == "PayloadTooLarge"
    assert str(MAX_BODY) in error["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds while streaming
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    r = client.post(
        "/api/v1/runs",
        content=chunks(),
        headers={**auth(admin_secret), "Content-Type": "application/json"},
    )
    error_of(r, 413)
    assert counts(coord) == before
    assert submit(client, admin_secret, GOOD).status_code == 201  # under the cap is fine


def test_a_reader_cannot_submit_or_see_other_projects(
    client: TestClient, coord: Coordinator, admin: Principal, admin_secret: str
) -> None:
    coord.store.projects.create("alpha", command=True, task=True, code=False)
    coord.store.projects.create("beta", command=True, task=True, code=False)
    _, reader = coord.create_token(admin, "reader", "alpha")
    _, sub_b = coord.create_token(admin, "submitter", "beta")
    run_b = submit(client, sub_b, GOOD).json()
    before = counts(coord)
    assert error_of(submit(client, reader, GOOD), 403)["type"] == "Forbidden"
    for ref in (str(run_b["id"]), run_b["name"]):
        error_of(client.get(f"/api/v1/runs/{ref}", headers=auth(reader)), 404)
        error_of(client.post(f"/api/v1/runs/{ref}/cancel", headers=auth(reader)), 404)
    assert client.get("/api/v1/runs", headers=auth(reader)).json() == {"runs": []}
    assert counts(coord) == before


def test_request_bodies_are_strict(
    client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    _, secret = coord.join(admin, "w1", {}, 2, ["command"])
    before = counts(coord)
    error = error_of(
        client.post("/api/v1/workers/lease", json={"max": "5"}, headers=auth(secret)), 422
    )
    assert error["field"] == "max"
    error = error_of(
        client.post("/api/v1/workers/lease", json={"mx": 5}, headers=auth(secret)), 422
    )
    assert error["field"] == "mx" and "unknown field" in error["message"]
    error = error_of(
        client.post(
            "/api/v1/workers/lease",
            content=b"{oops",
            headers={**auth(secret), "Content-Type": "application/json"},
        ),
        422,
    )
    assert "JSON" in error["message"]
    assert counts(coord) == before


def test_a_stale_lease_token_is_409_and_changes_nothing(
    client: TestClient, coord: Coordinator, admin: Principal
) -> None:
    coord.lease_ttl = 0.2
    _, secret = coord.join(admin, "w1", {}, 2, ["command"])
    coord.submit(admin, spec({"x": {"command": "true", "retries": 1}}))
    r = client.post("/api/v1/workers/lease", json={"max": 1}, headers=auth(secret))
    assert r.status_code == 200, r.text
    (lease,) = r.json()["leases"]
    aid = lease["attempt"]
    time.sleep(0.3)
    assert [e.attempt_id for e in coord.sweep()] == [aid]  # requeued: the token is stale now
    job_id = coord.store.runs.jobs(1)[0].id
    before = (counts(coord), coord.store.runs.job_by_id(job_id), coord.store.runs.attempts(job_id))

    body = {"attempt": aid, "token": lease["token"], "outcome": "passed", "exit_code": 0}
    error = error_of(
        client.post(f"/api/v1/attempts/{aid}/finish", json=body, headers=auth(secret)), 409
    )
    assert error["type"] == "LeaseLost"
    held = {"attempt": aid, "token": lease["token"]}
    error_of(client.post(f"/api/v1/attempts/{aid}/heartbeat", json=held, headers=auth(secret)), 409)
    chunk = {**held, "seq": 0, "stream": "stdout", "ts": 1.0, "data": "late"}
    error_of(client.post(f"/api/v1/attempts/{aid}/log", json=chunk, headers=auth(secret)), 409)
    after = (counts(coord), coord.store.runs.job_by_id(job_id), coord.store.runs.attempts(job_id))
    assert after == before

    # a submitter's token cannot act for a worker at all
    _, sub = coord.create_token(admin, "submitter", "default")
    error_of(client.post(f"/api/v1/attempts/{aid}/finish", json=body, headers=auth(sub)), 403)


def test_a_worker_round_trip(client: TestClient, coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w0")
    _, secret = coord.join(admin, "w1", {}, 2, ["command"])
    coord.submit(admin, spec({"x": {"command": "true"}}))
    (lease,) = client.post("/api/v1/workers/lease", json={"max": 5}, headers=auth(secret)).json()[
        "leases"
    ]
    aid = lease["attempt"]
    body = {"attempt": aid, "token": lease["token"], "outcome": "passed", "exit_code": 0}
    r = client.post(f"/api/v1/attempts/{aid}/finish", json=body, headers=auth(secret))
    assert r.json() == {"ok": True, "state": "passed"}
    r = client.post(f"/api/v1/attempts/{aid}/finish", json=body, headers=auth(secret))
    assert r.json() == {"ok": True, "state": "passed"}  # idempotent
    assert coord.store.runs.get(1).state.value == "passed"
    assert coord.lease(w.id, 5) == []


def test_metrics_count_live_jobs_and_workers(
    client: TestClient, coord: Coordinator, admin: Principal, admin_secret: str
) -> None:
    assert submit(client, admin_secret, GOOD).status_code == 201
    join(coord, admin, "m1", slots=3)
    text = client.get("/metrics").text
    assert 'corral_jobs{state="queued"} 1.0' in text
    assert 'corral_workers{state="online"} 1.0' in text
    assert 'corral_worker_slots{use="total"} 3.0' in text


def test_openapi_schema_is_served(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/runs" in schema["paths"]
    assert "/api/v1/workers/lease" in schema["paths"]
    # the two routes that read their query themselves still document it
    submit = schema["paths"]["/api/v1/runs"]["post"]
    assert [p["name"] for p in submit["parameters"]] == ["project", "wait"]
    wait = schema["paths"]["/api/v1/runs/{ref}/wait"]["get"]
    assert {p["name"] for p in wait["parameters"]} == {"ref", "timeout"}


def test_submit_and_wait_check_their_caller_and_query(
    client: TestClient, admin_secret: str
) -> None:
    body = {"name": "r", "jobs": {"a": {"command": "true"}}}
    assert client.post("/api/v1/runs", json=body).status_code == 401
    missing = client.post("/api/v1/runs?project=nope", json=body, headers=auth(admin_secret))
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    run = client.post("/api/v1/runs", json=body, headers=auth(admin_secret)).json()
    assert client.get(f"/api/v1/runs/{run['id']}/wait").status_code == 401
    for bad in ("abc", "-1", "301", "nan"):
        answer = client.get(
            f"/api/v1/runs/{run['id']}/wait?timeout={bad}", headers=auth(admin_secret)
        )
        assert answer.status_code == 422, bad
        error = answer.json()["error"]
        assert error["type"] == "InvalidInput" and error["field"] == "timeout"
        assert "expected a number from 0 to 300" in error["message"]
    waited = client.get(f"/api/v1/runs/{run['id']}/wait?timeout=0", headers=auth(admin_secret))
    assert waited.status_code == 200 and waited.json()["id"] == run["id"]


def test_a_log_long_poll_sees_a_change_made_just_after_it_looked(
    client: TestClient, coord: Coordinator, admin: Principal, admin_secret: str, monkeypatch: Any
) -> None:
    w = join(coord, admin, "w0")
    run = coord.submit(admin, spec({"x": {"command": "true"}}))
    (lease,) = coord.lease(w.id, 5)
    real_log = coord.log
    looks = {"n": 0}

    def log(*args: Any) -> Any:
        found = real_log(*args)
        looks["n"] += 1
        if looks["n"] == 1:
            # the job ends between this look and the wait that follows it
            report = Report(lease.attempt_id, lease.token, "passed", 0, "", time.time())
            coord.report(w.id, finished=[report])
        return found

    monkeypatch.setattr(coord, "log", log)
    started = time.monotonic()
    r = client.get(f"/api/v1/runs/{run.id}/jobs/x/log?wait=30", headers=auth(admin_secret))
    assert r.status_code == 200 and r.json()["ended"]
    # not the end of a 1 s wait slice, nor of the 30 s wait
    assert time.monotonic() - started < 0.9


def _finish_all(coord: Coordinator, worker_id: int, result: Any = None) -> None:
    for lease in coord.lease(worker_id, 10):
        report = Report(lease.attempt_id, lease.token, "passed", 0, "", time.time(), result=result)
        coord.report(worker_id, finished=[report])


def test_submit_with_wait_answers_at_the_end_with_every_result(
    client: TestClient, coord: Coordinator, admin: Principal, admin_secret: str
) -> None:
    w = join(coord, admin, "w0")
    body = {"name": "r", "jobs": {"a": {"command": "true"}, "b": {"command": "true"}}}
    answers: list[Any] = []
    asker = threading.Thread(
        target=lambda: answers.append(
            client.post("/api/v1/runs?wait=20", json=body, headers=auth(admin_secret))
        )
    )
    started = time.monotonic()
    asker.start()
    deadline = time.monotonic() + 10
    while asker.is_alive() and time.monotonic() < deadline:
        _finish_all(coord, w.id, result=7)
        time.sleep(0.02)
    asker.join(20)
    (r,) = answers
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["state"] == "passed"
    assert [(j["label"], j["state"], j["result"]) for j in run["results"]] == [
        ("a", "passed", 7),
        ("b", "passed", 7),
    ]
    assert time.monotonic() - started < 10


def test_submit_with_wait_answers_when_the_wait_runs_out(
    client: TestClient, coord: Coordinator, admin_secret: str
) -> None:
    started = time.monotonic()
    r = client.post("/api/v1/runs?wait=0.3", json=GOOD, headers=auth(admin_secret))
    assert r.status_code == 201 and r.json()["state"] == "queued"
    assert "results" not in r.json()  # only an ended run's answer has them
    assert 0.25 <= time.monotonic() - started < 5


def _wal_syncs(monkeypatch: Any) -> list[str]:
    """Each sync of the store's log made outside SQLite (by `make_durable` or a submit)."""
    from corral.store.wal_sync import WalFile

    synced: list[str] = []
    real = WalFile.sync

    def sync(self: WalFile) -> None:
        synced.append(self.path)
        real(self)

    monkeypatch.setattr(WalFile, "sync", sync)
    return synced


def _marking_submits(coord: Coordinator, monkeypatch: Any) -> list[tuple[int, bool]]:
    """For each submit: the store's write mark after it, and whether it was on disk then."""
    db = coord.store.db
    marks: list[tuple[int, bool]] = []
    real_submit = coord.submit

    def submit(*args: Any, **kwargs: Any) -> Any:
        run = real_submit(*args, **kwargs)
        marks.append((db.commits, db.is_durable(db.commits)))
        return run

    monkeypatch.setattr(coord, "submit", submit)
    return marks


def test_a_submit_with_wait_is_on_disk_before_its_answer_when_the_wait_runs_out(
    client: TestClient, coord: Coordinator, admin_secret: str, monkeypatch: Any
) -> None:
    marks = _marking_submits(coord, monkeypatch)
    synced = _wal_syncs(monkeypatch)
    r = client.post("/api/v1/runs?wait=0.2", json=GOOD, headers=auth(admin_secret))
    assert r.status_code == 201 and r.json()["state"] == "queued"
    ((mark, durable_at_submit),) = marks
    assert not durable_at_submit  # the submit itself does not sync: the answer waits for it
    assert coord.store.db.is_durable(mark)
    assert synced  # made so before the answer, by a sync of the log


def test_a_submit_with_wait_that_ended_is_on_disk_through_its_end_without_a_sync_more(
    client: TestClient, coord: Coordinator, admin: Principal, admin_secret: str, monkeypatch: Any
) -> None:
    w = join(coord, admin, "w0")
    marks = _marking_submits(coord, monkeypatch)
    synced = _wal_syncs(monkeypatch)
    answers: list[Any] = []
    asker = threading.Thread(
        target=lambda: answers.append(
            client.post("/api/v1/runs?wait=20", json=GOOD, headers=auth(admin_secret))
        )
    )
    asker.start()
    deadline = time.monotonic() + 10
    while asker.is_alive() and time.monotonic() < deadline:
        _finish_all(coord, w.id)  # each end is a commit synced by SQLite itself
        time.sleep(0.02)
    asker.join(20)
    (r,) = answers
    assert r.status_code == 201 and r.json()["state"] == "passed"
    ((mark, durable_at_submit),) = marks
    assert not durable_at_submit
    assert coord.store.db.is_durable(mark)
    assert synced == []  # the end's own sync covered the run's commit


def test_a_store_that_cannot_sync_later_syncs_a_submit_with_wait_in_its_commit(
    client: TestClient, coord: Coordinator, admin_secret: str, monkeypatch: Any
) -> None:
    """PostgreSQL, or a SQLite database this process cannot sync itself (`file:` names)."""
    from corral.store.engine import Database

    monkeypatch.setattr(Database, "syncs_on_demand", property(lambda self: False))
    asked: list[bool] = []
    real = coord.store.runs.submit

    def submit(*args: Any, durable: bool = True, **kwargs: Any) -> Any:
        asked.append(durable)
        return real(*args, durable=durable, **kwargs)

    monkeypatch.setattr(coord.store.runs, "submit", submit)
    r = client.post("/api/v1/runs?wait=0.1", json=GOOD, headers=auth(admin_secret))
    assert r.status_code == 201
    assert asked == [True]


def test_submit_with_wait_sees_an_end_recorded_before_it_waits(
    client: TestClient, coord: Coordinator, admin: Principal, admin_secret: str, monkeypatch: Any
) -> None:
    w = join(coord, admin, "w0")
    real_submit = coord.submit

    def submit_and_finish(*args: Any, **kwargs: Any) -> Any:
        run = real_submit(*args, **kwargs)
        _finish_all(coord, w.id)  # the end is told before the route reads its version
        return run

    monkeypatch.setattr(coord, "submit", submit_and_finish)
    started = time.monotonic()
    r = client.post("/api/v1/runs?wait=10", json=GOOD, headers=auth(admin_secret))
    assert r.status_code == 201 and r.json()["state"] == "passed"
    assert time.monotonic() - started < 4  # not the end of a 5 s wait slice


@pytest.mark.parametrize("bad", ["abc", "-1", "301", "nan"])
def test_a_bad_submit_wait_is_422_and_submits_nothing(
    client: TestClient, coord: Coordinator, admin_secret: str, bad: str
) -> None:
    before = counts(coord)
    r = client.post(f"/api/v1/runs?wait={bad}", json=GOOD, headers=auth(admin_secret))
    error = error_of(r, 422)
    assert error["field"] == "wait" and "expected a number from 0 to 300" in error["message"]
    assert counts(coord) == before


def test_paths_near_the_fast_lane_still_reach_the_framework(
    client: TestClient, admin_secret: str
) -> None:
    run = submit(client, admin_secret, GOOD).json()
    # a trailing slash, another method, a deeper path: FastAPI's answers, not the lane's
    slash = client.get(
        f"/api/v1/runs/{run['id']}/wait/?timeout=0",
        headers=auth(admin_secret),
        follow_redirects=False,
    )
    assert slash.status_code == 307
    assert client.put("/api/v1/runs", json=GOOD, headers=auth(admin_secret)).status_code == 405
    deep = client.get(f"/api/v1/runs/{run['id']}/x/wait", headers=auth(admin_secret))
    assert deep.status_code == 404
    listed = client.get("/api/v1/runs", headers=auth(admin_secret))
    assert listed.status_code == 200 and listed.json()["runs"][0]["id"] == run["id"]


def test_only_a_run_of_one_job_nobody_waits_for_may_have_its_end_held_back(
    client: TestClient, coord: Coordinator, admin: Principal, admin_secret: str, monkeypatch: Any
) -> None:
    """A worker may hold a job's end back a few milliseconds to record it with others only
    when that delays nothing but the end itself: a run of one job, submitted without `wait`,
    with nobody waiting for it."""
    w = join(coord, admin, "w0")
    left = submit(client, admin_secret, GOOD).json()["id"]
    assert coord.may_hold_end(left)
    two = {
        "name": "two",
        "jobs": {"a": {"command": "true"}, "b": {"command": "true", "needs": "a"}},
    }
    assert not coord.may_hold_end(submit(client, admin_secret, two).json()["id"])

    real_submit = coord.submit
    seen: list[bool] = []

    def submit_and_finish(*args: Any, **kwargs: Any) -> Any:
        run = real_submit(*args, **kwargs)
        seen.append(coord.may_hold_end(run.id))
        return run

    monkeypatch.setattr(coord, "submit", submit_and_finish)
    asker = threading.Thread(
        target=lambda: client.post("/api/v1/runs?wait=10", json=GOOD, headers=auth(admin_secret))
    )
    asker.start()
    until(lambda: bool(seen))
    assert seen == [False]  # submitted with `wait`: never held
    _finish_all(coord, w.id)
    asker.join(10)
    # ended, a run is forgotten; and a waiter makes any run's end go out at once
    assert not coord.may_hold_end(left)
    third = submit(client, admin_secret, GOOD).json()["id"]
    waiting = threading.Thread(
        target=lambda: client.get(
            f"/api/v1/runs/{third}/wait?timeout=5", headers=auth(admin_secret)
        )
    )
    waiting.start()
    until(lambda: not coord.may_hold_end(third))
    _finish_all(coord, w.id)
    waiting.join(10)


def test_one_request_waits_for_many_runs(
    client: TestClient, coord: Coordinator, admin: Principal, admin_secret: str
) -> None:
    w = join(coord, admin, "w0")
    ids = [
        submit(client, admin_secret, {**GOOD, "name": f"many-{i}"}).json()["id"] for i in range(3)
    ]
    # nothing has run: the answer comes when `timeout` passes, with each run as it stands
    r = client.post(
        "/api/v1/runs/wait", json={"runs": ids, "timeout": 0.2}, headers=auth(admin_secret)
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"runs": [{"id": i, "state": "queued"} for i in ids], "ended": False}

    answers: list[Any] = []
    asker = threading.Thread(
        target=lambda: answers.append(
            client.post(
                "/api/v1/runs/wait",
                json={"runs": [ids[2], ids[0], ids[1], ids[0]], "timeout": 30},
                headers=auth(admin_secret),
            )
        )
    )
    started = time.monotonic()
    asker.start()
    time.sleep(0.3)
    assert not answers  # held while the runs are still to run
    _finish_all(coord, w.id)
    asker.join(20)
    assert time.monotonic() - started < 10  # woken by the ends, not by the timeout
    body = answers[0].json()
    assert body["ended"] is True
    assert [r["id"] for r in body["runs"]] == [ids[2], ids[0], ids[1], ids[0]]
    assert {r["state"] for r in body["runs"]} == {"passed"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"runs": []}, "runs"),
        ({"runs": "1,2"}, "runs"),
        ({"runs": [1, True]}, "runs.1"),
        ({"runs": [0]}, "runs.0"),
        ({"runs": [1.5]}, "runs.0"),
        ({"runs": [1], "timeout": -1}, "timeout"),
        ({"runs": [1], "timeout": 301}, "timeout"),
        ({"runs": [1], "wait": 5}, "wait"),
        ({"timeout": 5}, "runs"),
    ],
)
def test_a_bad_many_run_wait_is_422_naming_the_field(
    client: TestClient, admin_secret: str, body: dict[str, Any], field: str
) -> None:
    submit(client, admin_secret, GOOD)
    r = client.post("/api/v1/runs/wait", json=body, headers=auth(admin_secret))
    assert error_of(r, 422)["field"] == field


def test_a_many_run_wait_names_a_run_it_cannot_see(
    client: TestClient, coord: Coordinator, admin: Principal, admin_secret: str
) -> None:
    mine = submit(client, admin_secret, GOOD).json()["id"]
    # (10,001 ids are over this test server's small body cap: the model says it alone)
    with pytest.raises(ValidationError, match="at most 10000 items"):
        WaitRunsBody.model_validate({"runs": [mine] * 10_001})
    r = client.post("/api/v1/runs/wait", json={"runs": [mine, 999_999]}, headers=auth(admin_secret))
    assert error_of(r, 404)["message"] == "no run 999999"
    # a run of the `default` project is not there for a token of another project
    _, reader = coord.create_token(admin, "reader", "team-a")
    r = client.post("/api/v1/runs/wait", json={"runs": [mine]}, headers=auth(reader))
    assert error_of(r, 404)["message"] == f"no run {mine}"
