"""Dataflow through real workers: inputs placed read-only, outputs collected, worker tokens fenced."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from integration_helpers import spec

from corral.app import create_app
from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.objects.backend import open_backend
from corral.registry import Registry
from corral.store import Store
from corral.worker.agent import Agent, AgentOptions
from corral.worker.link import LocalLink
from corral.worker.sandbox import check, find_bwrap

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
    )
    from fastapi.testclient import TestClient

TASKS = """
import corral
import pathlib


@corral.task
def total(scale):
    text = pathlib.Path("inputs/numbers.txt").read_text()
    pathlib.Path("sum.txt").write_text(str(sum(int(x) for x in text.split()) * scale))
    print("summed")
    return {"lines": len(text.split())}
"""


@pytest.fixture
def engine() -> str:
    """Workers run one code path over the store (its rows are tested on both engines)."""
    return "sqlite"


@pytest.fixture
def coord(store: Store, tmp_path: Path) -> Coordinator:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "sums.py").write_text(TASKS)
    return Coordinator(
        store,
        objects=open_backend(str(tmp_path / "objects"), tmp_path),
        registry=Registry([tasks]),
    )


@pytest.fixture
def admin(coord: Coordinator) -> Principal:
    _, secret = coord.store.tokens.create("admin", "test-admin")
    return coord.authenticate(secret)


@pytest.fixture
def workdir() -> Iterator[str]:
    """A working-directory root another user can search (jobs run as nobody under root)."""
    path = tempfile.mkdtemp(prefix="corral-dataflow-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(coord: Coordinator, workdir: str, tmp_path: Path) -> Iterator[Agent]:
    link = LocalLink(coord, "local", {}, 2, ["command", "task"])
    run_as = (65534, 65534) if os.geteuid() == 0 else None  # root would ignore the modes
    agent = Agent(
        link,
        AgentOptions(slots=2, workdir=workdir, task_cache=str(tmp_path / "cache"), run_as=run_as),
    )
    agent.start()
    yield agent
    agent.stop("test over")
    agent.wait_stopped(10)
    agent.join(10)


def wait_run(coord: Coordinator, run_id: int) -> None:
    deadline = time.monotonic() + 30
    while not coord.store.runs.get(run_id).state.ended:
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.05)


def log(coord: Coordinator, admin: Principal, run_id: int, label: str) -> str:
    _, _, _, chunks = coord.log(admin, str(run_id), label, None, -1, 1000)
    return "".join(c.data for c in chunks)


def read(coord: Coordinator, sha: str) -> bytes:
    assert coord.blobs is not None
    return b"".join(coord.object_bytes(coord.store.objects.get(sha)))  # type: ignore[arg-type]


def test_inputs_are_placed_read_only_and_outputs_kept(
    coord: Coordinator, admin: Principal, agent: Agent
) -> None:
    run = coord.submit(
        admin,
        spec(
            {
                "make": {
                    "command": "mkdir -p out/deep && printf '1 2 3' > out/deep/numbers.txt"
                    " && printf made",
                    "outputs": ["out/*/numbers.txt"],
                    "stdout": "object",
                },
                "use": {
                    "command": "cat inputs/data/numbers.txt inputs/said"
                    " && stat -c '%a' inputs/data/numbers.txt inputs/data inputs"
                    " && { echo x >> inputs/data/numbers.txt; } 2>/dev/null && echo WROTE;"
                    " touch inputs/new 2>/dev/null && echo CREATED; true",
                    "inputs": {
                        "data/numbers.txt": "make:out/deep/numbers.txt",
                        "said": "make:stdout",
                    },
                },
            }
        ),
    )
    wait_run(coord, run.id)
    _, use = coord.job(admin, str(run.id), "use")
    assert use.job.state.value == "passed", use.job.reason
    assert log(coord, admin, run.id, "use") == "1 2 3made444\n555\n555\n"
    made = {o.name: o for o in coord.outputs(admin, str(run.id), "make")}
    assert sorted(made) == ["out/deep/numbers.txt", "stdout"]
    assert read(coord, made["stdout"].sha256) == b"made"


def test_a_task_job_takes_inputs_and_keeps_outputs(
    coord: Coordinator, admin: Principal, agent: Agent
) -> None:
    run = coord.submit(
        admin,
        spec(
            {
                "numbers": {"command": "printf '4\\n5\\n6\\n'", "stdout": "object"},
                "sum": {
                    "task": "total",
                    "args": {"scale": 2},
                    "inputs": {"numbers.txt": "numbers:stdout"},
                    "outputs": ["sum.txt"],
                    "stdout": "object",
                },
            }
        ),
    )
    wait_run(coord, run.id)
    _, job = coord.job(admin, str(run.id), "sum")
    assert job.job.state.value == "passed", job.job.reason
    assert job.attempts[-1].result == {"lines": 3}
    kept = {o.name: read(coord, o.sha256) for o in coord.outputs(admin, str(run.id), "sum")}
    assert kept == {"sum.txt": b"30", "stdout": b"summed\n"}


def test_symlinks_and_special_files_are_not_collected(
    coord: Coordinator, admin: Principal, agent: Agent
) -> None:
    run = coord.submit(
        admin,
        spec(
            {
                "leak": {
                    "command": "mkdir out && ln -s /etc/passwd out/passwd && ln -s / out/root"
                    " && mkfifo out/fifo && echo kept > out/real",
                    "outputs": ["out/*"],
                },
            }
        ),
    )
    wait_run(coord, run.id)
    assert [o.name for o in coord.outputs(admin, str(run.id), "leak")] == ["out/real"]
    text = log(coord, admin, run.id, "leak")
    assert "output not kept: out/passwd: a symbolic link (never followed)" in text
    assert "output not kept: out/root: a symbolic link (never followed)" in text
    assert "output not kept: out/fifo: not a regular file" in text
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    assert coord.store.objects.get(passwd) is None


def test_a_failed_jobs_outputs_are_kept_and_a_missing_output_fails_its_consumer(
    coord: Coordinator, admin: Principal, agent: Agent
) -> None:
    run = coord.submit(
        admin,
        spec(
            {
                "half": {"command": "echo partial > part.log; exit 3", "outputs": ["*.log"]},
                "empty": {"command": "true", "outputs": ["res/*.csv"]},
                "reader": {"command": "cat inputs/r.csv", "inputs": {"r.csv": "empty:res/r.csv"}},
            }
        ),
    )
    wait_run(coord, run.id)
    assert [o.name for o in coord.outputs(admin, str(run.id), "half")] == ["part.log"]
    _, reader = coord.job(admin, str(run.id), "reader")
    assert reader.job.state.value == "failed"
    assert reader.job.reason == (
        "input 'r.csv': job 'empty' produced no 'res/r.csv' (nothing matched, or it has not passed)"
    )


# -- the worker's credential over HTTP ------------------------------------------------------


def test_a_worker_token_reads_and_writes_only_for_attempts_it_holds(
    coord: Coordinator, admin: Principal
) -> None:
    def auth(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    _, admin_secret = coord.store.tokens.create("admin", "a")
    _, worker_secret = coord.join(admin, "w1", {}, 2, ["command"])
    _, other_secret = coord.join(admin, "w2", {}, 2, ["command"])
    data, unrelated = b"the input", b"someone else's"
    with TestClient(create_app(coord)) as client:
        for blob in (data, unrelated):
            sha = hashlib.sha256(blob).hexdigest()
            r = client.put(f"/api/v1/objects/{sha}", content=blob, headers=auth(admin_secret))
            assert r.status_code == 201, r.text
        sha, other_sha = (hashlib.sha256(b).hexdigest() for b in (data, unrelated))
        # a worker cannot upload into a project, only for an attempt it holds
        r = client.put(f"/api/v1/objects/{sha}", content=data, headers=auth(worker_secret))
        assert r.status_code == 404
        r = client.post(
            "/api/v1/runs",
            json={
                "jobs": {"a": {"command": "x", "inputs": {"d": f"sha256:{sha}"}, "outputs": ["o"]}}
            },
            headers=auth(admin_secret),
        )
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        r = client.post("/api/v1/workers/lease", json={"max": 1}, headers=auth(worker_secret))
        (lease,) = r.json()["leases"]
        assert lease["spec"]["input_objects"] == [{"name": "d", "sha256": sha}]

        assert client.get(f"/api/v1/objects/{sha}", headers=auth(worker_secret)).content == data
        for secret, digest in ((worker_secret, other_sha), (other_secret, sha)):
            r = client.get(f"/api/v1/objects/{digest}", headers=auth(secret))
            assert r.status_code == 404, r.text

        out = b"produced"
        out_sha = hashlib.sha256(out).hexdigest()
        r = client.put(
            f"/api/v1/objects/{out_sha}",
            content=out,
            params={"attempt": lease["attempt"]},
            headers=auth(other_secret),
        )
        assert r.status_code == 409 and coord.store.objects.get(out_sha) is None
        r = client.put(
            f"/api/v1/objects/{out_sha}",
            content=out,
            params={"attempt": lease["attempt"]},
            headers=auth(worker_secret),
        )
        assert r.status_code == 201, r.text
        bad = {"attempt": lease["attempt"], "token": lease["token"], "outcome": "passed"}
        for name in ("../escape", "/abs", "a//b", "x\x00y"):
            r = client.post(
                "/api/v1/workers/report",
                json={
                    "finished": [{**bad, "outputs": [{"name": name, "sha256": out_sha, "size": 8}]}]
                },
                headers=auth(worker_secret),
            )
            assert r.status_code == 422, (name, r.text)
        r = client.post(
            "/api/v1/workers/report",
            json={"finished": [{**bad, "outputs": [{"name": "o", "sha256": out_sha, "size": 8}]}]},
            headers=auth(worker_secret),
        )
        assert r.status_code == 200, r.text
        job = client.get(f"/api/v1/runs/{run_id}/jobs/a", headers=auth(admin_secret)).json()
        expected = [{"name": "o", "sha256": out_sha, "size": 8}]
        assert job["outputs"] == expected and job["attempt_list"][0]["outputs"] == expected
        r = client.get(f"/api/v1/runs/{run_id}/jobs/a/outputs", headers=auth(admin_secret))
        assert r.json() == {"attempt": 1, "outputs": expected}
        r = client.get(
            f"/api/v1/runs/{run_id}/jobs/a/outputs?attempt=7", headers=auth(admin_secret)
        )
        assert r.status_code == 404
        # the attempt is over: its input is not the worker's to read any more
        r = client.get(f"/api/v1/objects/{sha}", headers=auth(worker_secret))
        assert r.status_code == 404


def test_a_sandboxed_code_job_reads_its_inputs_and_keeps_outputs(
    coord: Coordinator,
    admin: Principal,
    workdir: str,
    tmp_path: Path,
    missing_service: Callable[[str, str], NoReturn],
) -> None:
    bwrap = find_bwrap()
    why = check(bwrap)
    if why:
        missing_service("bwrap", why)
    assert bwrap is not None
    link = LocalLink(coord, "boxed", {}, 1, ["command", "code"])
    agent = Agent(link, AgentOptions(slots=1, workdir=workdir, bwrap=bwrap))
    agent.start()
    try:
        code = (
            "import pathlib\n"
            "text = pathlib.Path('inputs/words').read_text()\n"
            "pathlib.Path('count.txt').write_text(str(len(text.split())))\n"
            "try:\n"
            "    pathlib.Path('inputs/words').write_text('changed')\n"
            "except OSError as exc:\n"
            "    print('read-only:', exc.strerror)\n"
        )
        run = coord.submit(
            admin,
            spec(
                {
                    "words": {"command": "echo one two three", "stdout": "object"},
                    "count": {
                        "code": code,
                        "inputs": {"words": "words:stdout"},
                        "outputs": ["count.txt"],
                    },
                }
            ),
        )
        wait_run(coord, run.id)
        _, job = coord.job(admin, str(run.id), "count")
        assert job.job.state.value == "passed", job.job.reason
        assert log(coord, admin, run.id, "count") == "read-only: Read-only file system\n"
        (kept,) = coord.outputs(admin, str(run.id), "count")
        assert (kept.name, read(coord, kept.sha256)) == ("count.txt", b"3")
    finally:
        agent.stop("test over")
        agent.wait_stopped(10)
        agent.join(10)
