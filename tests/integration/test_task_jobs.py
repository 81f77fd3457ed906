"""Task jobs on both engines: registry lookup at submit, the lease payload, results, the API."""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration_helpers import join, spec

from corral.app import create_app
from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Report
from corral.errors import Forbidden, InvalidRunSpec
from corral.registry import Registry
from corral.store import Store
from corral.worker.agent import Agent, AgentOptions
from corral.worker.link import LocalLink

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
    )
    from fastapi.testclient import TestClient

TASKS = """
import corral

@corral.task
def wordcount(text):
    print("counting")
    return {"words": len(text.split())}

@corral.task(name="deploy", on={"role": "app"}, timeout="2m", retries=2)
def deploy_it(version):
    return version
"""


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "words.py").write_text(TASKS)
    return d


@pytest.fixture
def tcoord(store: Store, task_dir: Path) -> Coordinator:
    return Coordinator(store, lease_ttl=30.0, registry=Registry([task_dir]))


@pytest.fixture
def tadmin(tcoord: Coordinator) -> Principal:
    _, secret = tcoord.store.tokens.create("admin", "test-admin")
    return tcoord.authenticate(secret)


def test_a_task_job_leases_with_its_code_and_finishes_with_a_result(
    tcoord: Coordinator, tadmin: Principal, task_dir: Path
) -> None:
    run = tcoord.submit(tadmin, spec({"wc": {"task": "wordcount", "args": {"text": "a b c"}}}))
    (job,) = tcoord.store.runs.jobs(run.id)
    # the store holds the task's name and arguments only
    assert dict(job.payload) == {"kind": "task", "task": "wordcount", "args": {"text": "a b c"}}

    w = join(tcoord, tadmin, "w1", allow=("task",))
    (lease,) = tcoord.lease(w.id, 5)
    sha = hashlib.sha256((task_dir / "words.py").read_bytes()).hexdigest()
    assert dict(lease.payload) == {
        "kind": "task",
        "task": "wordcount",
        "args": {"text": "a b c"},
        "module": "words",
        "function": "wordcount",
        "sha256": sha,
    }
    (ended,) = tcoord.finish(
        w.id, [Report(lease.attempt_id, lease.token, "passed", 0, "returned", result={"words": 3})]
    )
    assert ended.state.value == "passed"  # type: ignore[union-attr]
    (attempt,) = tcoord.store.runs.attempts(job.id)
    assert attempt.result == {"words": 3}
    # the same finish again changes nothing, not even the result
    tcoord.finish(
        w.id, [Report(lease.attempt_id, lease.token, "passed", 0, "returned", result="other")]
    )
    assert tcoord.store.runs.attempts(job.id)[0].result == {"words": 3}


def test_the_decorators_options_are_defaults_the_job_may_override(
    tcoord: Coordinator, tadmin: Principal
) -> None:
    run = tcoord.submit(
        tadmin,
        spec(
            {
                "d1": {"task": "deploy", "args": {"version": "1"}},
                "d2": {"task": "deploy", "on": {"role": "db"}, "timeout": "5s", "retries": 0},
            }
        ),
    )
    d1, d2 = tcoord.store.runs.jobs(run.id)
    assert (dict(d1.selector), d1.timeout, d1.retries) == ({"role": "app"}, 120.0, 2)
    assert (dict(d2.selector), d2.timeout, d2.retries) == ({"role": "db"}, 5.0, 0)


def test_unknown_tasks_and_disallowed_projects_are_refused(
    tcoord: Coordinator, tadmin: Principal
) -> None:
    with pytest.raises(InvalidRunSpec) as caught:
        tcoord.submit(tadmin, spec({"a": {"task": "wordcount"}, "b": {"task": "nope"}}))
    assert caught.value.problems == [("jobs.b.task", "unknown task 'nope'")]
    tcoord.store.projects.create("shell-only", command=True, task=False, code=False)
    with pytest.raises(Forbidden, match="does not allow task jobs"):
        tcoord.submit(tadmin, spec({"a": {"task": "wordcount"}}, project="shell-only"))
    assert tcoord.runs(tadmin) == []


def test_a_changed_task_file_reaches_the_next_lease(
    tcoord: Coordinator, tadmin: Principal, task_dir: Path
) -> None:
    w = join(tcoord, tadmin, "w1", allow=("task",))
    tcoord.submit(tadmin, spec({"a": {"task": "wordcount", "args": {"text": "x"}}}))
    (first,) = tcoord.lease(w.id, 1)
    (task_dir / "words.py").write_text(TASKS + "\n# a new version\n")
    tcoord.submit(tadmin, spec({"a": {"task": "wordcount", "args": {"text": "y"}}}))
    (second,) = tcoord.lease(w.id, 1)
    assert first.payload["sha256"] != second.payload["sha256"]
    me = Principal(0, "worker", "w1", worker_id=w.id)
    # both versions can be fetched: the first lease's job runs the code it was leased with
    assert b"a new version" not in tcoord.task_source(me, first.payload["sha256"])
    assert b"a new version" in tcoord.task_source(me, second.payload["sha256"])


@pytest.fixture
def client(tcoord: Coordinator) -> Iterator[TestClient]:
    with TestClient(create_app(tcoord)) as c:
        yield c


def test_the_api_serves_sources_to_workers_and_shows_results(
    client: TestClient, tcoord: Coordinator, tadmin: Principal, task_dir: Path
) -> None:
    _, admin_secret = tcoord.store.tokens.create("admin", "a")
    admin = {"Authorization": f"Bearer {admin_secret}"}
    _, worker_secret = tcoord.join(tadmin, "w1", {}, 1, ["task"])
    worker = {"Authorization": f"Bearer {worker_secret}"}
    _, reader_secret = tcoord.create_token(tadmin, "reader", "default")
    reader = {"Authorization": f"Bearer {reader_secret}"}

    r = client.post(
        "/api/v1/runs",
        json={"jobs": {"wc": {"task": "wordcount", "args": {"text": "a b"}}}},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    r = client.post("/api/v1/workers/lease", json={"max": 1}, headers=worker)
    (lease,) = r.json()["leases"]
    sha = lease["spec"]["sha256"]

    r = client.get(f"/api/v1/tasks/sources/{sha}", headers=worker)
    assert r.status_code == 200 and r.content == (task_dir / "words.py").read_bytes()
    assert client.get(f"/api/v1/tasks/sources/{sha}", headers=reader).status_code == 403
    r = client.get(f"/api/v1/tasks/sources/{'0' * 64}", headers=worker)
    assert r.status_code == 404 and "no task source" in r.json()["error"]["message"]
    r = client.get("/api/v1/tasks/sources/..%2F..%2Fetc%2Fpasswd", headers=admin)
    assert r.status_code in (404, 422)
    r = client.get(f"/api/v1/tasks/sources/{'G' * 64}", headers=admin)
    assert r.status_code == 422 and r.json()["error"]["field"] == "sha256"

    r = client.post(
        "/api/v1/workers/report",
        json={
            "finished": [
                {
                    "attempt": lease["attempt"],
                    "token": lease["token"],
                    "outcome": "passed",
                    "exit_code": 0,
                    "reason": "returned",
                    "result": {"words": 2, "list": [1, None, "x"]},
                }
            ]
        },
        headers=worker,
    )
    assert r.status_code == 200 and r.json()["finished"][0]["ok"], r.text
    job = client.get(f"/api/v1/runs/{run_id}/jobs/wc", headers=reader).json()
    assert job["result"] == {"words": 2, "list": [1, None, "x"]}
    assert job["attempt_list"][0]["result"] == {"words": 2, "list": [1, None, "x"]}

    listed = client.get("/api/v1/tasks", headers=reader).json()
    assert [t["name"] for t in listed["tasks"]] == ["deploy", "wordcount"]
    assert listed["tasks"][0]["on"] == {"role": "app"}


@pytest.mark.parametrize(
    ("job", "field", "message"),
    [
        ({"task": "nope"}, "jobs.j.task", "unknown task 'nope'"),
        ({"task": "wordcount", "args": [1, 2]}, "jobs.j.args", "expected a table of arguments"),
        ({"task": "wordcount", "args": "text"}, "jobs.j.args", "expected a table of arguments"),
    ],
)
def test_bad_task_jobs_get_422_naming_the_field(
    client: TestClient, tcoord: Coordinator, job: dict[str, object], field: str, message: str
) -> None:
    _, secret = tcoord.store.tokens.create("admin", "a")
    r = client.post(
        "/api/v1/runs", json={"jobs": {"j": job}}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["field"] == field and message in error["message"]
    assert tcoord.store.runs.list(None) == []


def test_the_local_worker_runs_tasks_end_to_end(
    tcoord: Coordinator, tadmin: Principal, tmp_path: Path
) -> None:
    link = LocalLink(tcoord, "local", {}, 2, ["command", "task"])
    agent = Agent(
        link, AgentOptions(slots=2, workdir=str(tmp_path), task_cache=str(tmp_path / "c"))
    )
    agent.start()
    try:
        run = tcoord.submit(
            tadmin,
            spec(
                {
                    "a": {"task": "wordcount", "args": {"text": "one two three"}},
                    "b": {"task": "wordcount", "args": {"txt": "wrong argument"}},
                }
            ),
        )
        deadline = time.monotonic() + 30
        while not tcoord.store.runs.get(run.id).state.ended and time.monotonic() < deadline:
            time.sleep(0.05)
        _, a = tcoord.job(tadmin, str(run.id), "a")
        _, b = tcoord.job(tadmin, str(run.id), "b")
        assert a.job.state.value == "passed" and a.attempts[-1].result == {"words": 3}
        assert b.job.state.value == "failed"
        assert "unexpected keyword argument 'txt'" in b.job.reason
        _, _, _, chunks = tcoord.log(tadmin, str(run.id), "a", None, -1, 100)
        assert [(c.stream, c.data) for c in chunks] == [("stdout", "counting\n")]
        _, _, _, chunks = tcoord.log(tadmin, str(run.id), "b", None, -1, 100)
        assert any(c.stream == "stderr" and "TypeError: wordcount()" in c.data for c in chunks)
    finally:
        agent.stop("test over")
        agent.wait_stopped(10)
        agent.join(10)  # no thread of it may touch the store once the test closes it
