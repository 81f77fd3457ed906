"""Registered tasks through real processes: `corral serve --tasks DIR`, `corral worker --allow task`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from acceptance_helpers import Cluster, Procs, wait_until

import corral

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TASKS = """
import os, signal, sys
import corral

@corral.task
def wordcount(text):
    print("counting words")
    return {"words": len(text.split()), "pid": os.getpid()}

@corral.task(name="explode")
def explode(why):
    print("about to fail", file=sys.stderr)
    raise RuntimeError(why)

@corral.task
def die():
    os.kill(os.getpid(), signal.SIGKILL)

@corral.task
def version():
    return 1
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tasks")
    (d / "text.py").write_text(TASKS)
    (d / "broken.py").write_text("import corral\n@corral.task\ndef oops(:\n")
    return d


@pytest.fixture(scope="module")
def _task_server(tmp_path_factory: pytest.TempPathFactory, task_dir: Path) -> Iterator[Cluster]:
    keeper = Procs()
    try:
        yield Cluster(keeper, tmp_path_factory.mktemp("taskserver"), "taskserver").start(
            local_slots=0, lease_ttl="10s", extra=("--tasks", str(task_dir))
        )
    finally:
        keeper.close()


@pytest.fixture
def tasks(_task_server: Cluster, procs: Procs, tmp_path: Path) -> Cluster:
    return _task_server.borrow(procs, tmp_path)


def task_worker(cluster: Cluster, name: str) -> int:
    proc = cluster.worker(
        name,
        {"pool": name},
        extra=("--allow", "task,command", "--task-cache", str(cluster.base / "cache")),
    )
    return proc.popen.pid


def test_task_results_failures_and_crashes(tasks: Cluster, tmp_path: Path) -> None:
    task_worker(tasks, "tw1")
    on = '{ pool = "tw1" }'
    done = tasks.cli(
        "run", "--task", "wordcount", "--args", '{"text": "one two three"}', "--on", "pool=tw1"
    )
    assert done.code == 0, done
    lines = done.out.splitlines()
    assert lines[0] == "counting words"
    first = json.loads(lines[-1])
    assert first["words"] == 3

    spec = tmp_path / "run.toml"
    spec.write_text(
        f"""
name = "tasks-acceptance"
[jobs.count]
task = "wordcount"
args = {{ text = "a b" }}
on = {on}
[jobs.boom]
task = "explode"
args = {{ why = "the input was bad" }}
on = {on}
[jobs.crash]
task = "die"
on = {on}
[jobs.after]
task = "wordcount"
args = {{ text = "still running" }}
needs = ["crash"]
when = "always"
on = {on}
"""
    )
    submitted = tasks.cli("submit", str(spec), "--json")
    assert submitted.code != 0, submitted  # two jobs fail
    assert submitted.out.startswith("{"), submitted
    run = json.loads(submitted.out)
    jobs = {j["label"]: j for j in run["jobs"]}
    assert jobs["count"]["state"] == "passed"
    assert tasks.job(run["id"], "count")["result"]["words"] == 2

    assert jobs["boom"]["state"] == "failed"
    assert jobs["boom"]["reason"] == "task raised RuntimeError: the input was bad"
    logs = tasks.cli("logs", f"{run['id']}/boom")
    assert "Traceback (most recent call last)" in logs.err, logs
    assert "raise RuntimeError(why)" in logs.err and "about to fail" in logs.err
    assert "Traceback" not in logs.out

    assert jobs["crash"]["state"] == "failed"
    assert jobs["crash"]["reason"] == "task process died: killed by signal 9 (SIGKILL)"
    # the crash took down one task process, which was replaced: the next job ran
    assert jobs["after"]["state"] == "passed"
    after = tasks.job(run["id"], "after")["result"]
    assert after["words"] == 2 and after["pid"] != first["pid"]


def test_a_changed_task_file_reaches_a_running_worker(tasks: Cluster, task_dir: Path) -> None:
    worker_pid = task_worker(tasks, "tw2")
    args = ("run", "--task", "version", "--on", "pool=tw2")
    before = tasks.cli(*args)
    assert (before.code, before.out.strip()) == (0, "1"), before
    path = task_dir / "text.py"
    path.write_text(TASKS.replace("return 1", "return 2"))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    try:
        after = tasks.cli(*args)
        assert (after.code, after.out.strip()) == (0, "2"), after
    finally:
        path.write_text(TASKS)
    assert tasks.workers()["tw2"]["state"] == "online"
    assert os.path.exists(f"/proc/{worker_pid}") or os.uname().sysname != "Linux"


def test_bad_task_input_is_refused(tasks: Cluster) -> None:
    unknown = tasks.cli("run", "--task", "oops")
    assert unknown.code != 0
    assert "unknown task 'oops'" in unknown.err and "broken.py:3" in unknown.err, unknown
    bad_args = tasks.cli("run", "--task", "wordcount", "--args", "[1, 2]")
    assert bad_args.code != 0 and "jobs.job.args" in bad_args.err, bad_args
    listed = tasks.get("/api/v1/tasks")
    assert [t["name"] for t in listed["tasks"]] == ["die", "explode", "version", "wordcount"]
    assert any("broken.py" in p for p in listed["problems"])
    assert not any(r["name"] == "oops" for r in tasks.runs())


def test_the_local_worker_of_serve_runs_tasks(cluster: Cluster, task_dir: Path) -> None:
    cluster.start(local_slots=1, extra=("--tasks", str(task_dir)))
    done = cluster.cli("run", "--task", "wordcount", "--args", '{"text": "x y z w"}')
    assert done.code == 0, done
    assert json.loads(done.out.splitlines()[-1])["words"] == 4
    wait_until(lambda: (cluster.home / "task-sources").is_dir(), 5, "the local task cache")
    # submit and wait in one request: the handle holds the end and the result
    with corral.Client(cluster.url, cluster.token) as c:
        spec = {"jobs": {"count": {"task": "wordcount", "args": {"text": "a b"}}}}
        run = c.submit(spec, wait=30)
        assert run.ended and run.state == "passed"
        sent: list[str] = []
        real = c.http.request
        c.http.request = lambda *a, **k: sent.append(a[1]) or real(*a, **k)  # type: ignore[method-assign]
        assert run.result("count")["words"] == 2
        assert sent == []  # the result came with the answer, not from another request
        slow = c.submit({"jobs": {"s": {"command": "sleep 5"}}}, wait=0.2)
        assert not slow.ended and "results" not in slow
