"""Task processes of a worker: the runner protocol, output, results, crashes, limits, reuse."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from process_helpers import gone_within, running

from corral.domain.models import Lease
from corral.errors import NotFound
from corral.worker import task_pool
from corral.worker.executor import Chunk
from corral.worker.task_pool import PoolOptions, TaskPool, TaskResult
from corral.worker.tracking import tracker

SOURCE = """
import os, signal, sys, time
import corral

LOADED = time.time()  # once per import

@corral.task
def add(a, b):
    print("adding", a, b)
    print("to stderr", file=sys.stderr)
    return {"sum": a + b, "pid": os.getpid(), "loaded": LOADED, "cwd": os.getcwd(),
            "job": os.environ.get("CORRAL_JOB")}

@corral.task
def boom(message):
    print("before the error")
    raise ValueError(message)

@corral.task
def not_json():
    return {1, 2}

@corral.task
def leave(code):
    os._exit(code)

@corral.task
def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)

@corral.task
def sleep(seconds):
    time.sleep(seconds)
    return "woke"

@corral.task
def hog(mib):
    block = bytearray(mib * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(5)
    return len(block)

KEPT = []

@corral.task
def getenv(name):
    return [os.environ.get(name), os.getpid()]

@corral.task
def meddle(name, value):  # changes the process's environment for whatever runs after it
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    return os.getpid()

@corral.task
def keep(mib):
    KEPT.append(b"k" * (mib * 1024 * 1024))  # held after the call returns
    return os.getpid()

@corral.task
async def later(x):
    return x * 2

@corral.task
def leave_running():  # a process left behind, in the runner's group
    import subprocess
    return [subprocess.Popen(["sleep", "60"]).pid, os.getpid()]

@corral.task
def leave_detached():  # a process left behind in a session of its own
    import subprocess
    return subprocess.Popen(["sleep", "61"], start_new_session=True).pid

@corral.task
def leave_running_and_die():
    import subprocess
    child = subprocess.Popen(["sleep", "60"]).pid
    print(child, flush=True)
    os._exit(3)

@corral.task
def chatty(n):
    for i in range(n):
        print("line", i)
    return n
"""


class Sources:
    """Task sources by hash, as the server would hand them out."""

    def __init__(self) -> None:
        self.by_hash: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def add(self, text: str) -> str:
        data = text.encode()
        sha = hashlib.sha256(data).hexdigest()
        self.by_hash[sha] = data
        return sha

    def __call__(self, sha: str) -> bytes:
        self.fetched.append(sha)
        if sha not in self.by_hash:
            raise NotFound(f"no task source with sha256 {sha}")
        return self.by_hash[sha]


@pytest.fixture
def sources() -> Sources:
    return Sources()


@pytest.fixture
def pool(tmp_path: Path, sources: Sources) -> Iterator[TaskPool]:
    p = TaskPool(sources, PoolOptions(cache_dir=str(tmp_path / "cache"), max_rss=300 * 2**20))
    yield p
    p.close()


def lease(sha: str, function: str, args: dict[str, Any], timeout: float | None = None) -> Lease:
    payload = {"kind": "task", "task": function, "args": args}
    if sha:
        payload.update({"module": "mathy", "function": function, "sha256": sha})
    return Lease(1, "tok", 1, 1, "r", "j", "", 1, payload, timeout, 30.0)


def call(
    pool: TaskPool, sha: str, function: str, args: dict[str, Any], timeout: float | None = None
) -> tuple[TaskResult, list[Chunk]]:
    chunks: list[Chunk] = []
    result = pool.call(
        lease(sha, function, args, timeout), {"CORRAL_JOB": "j"}, chunks.append
    ).run()
    return result, chunks


def text(chunks: list[Chunk], stream: str) -> str:
    return "".join(c.data for c in chunks if c.stream == stream)


def test_a_task_returns_its_value_and_its_output_is_kept_apart(
    pool: TaskPool, sources: Sources, tmp_path: Path
) -> None:
    sha = sources.add(SOURCE)
    result, chunks = call(pool, sha, "add", {"a": 2, "b": 3})
    assert (result.outcome, result.exit_code) == ("passed", 0), result.reason
    assert result.value["sum"] == 5
    assert result.value["job"] == "j"
    assert "corral-task-" in result.value["cwd"]
    # the call's directory is left empty, for the next call (a new one is no fresher)
    assert list(Path(result.value["cwd"]).iterdir()) == []
    assert text(chunks, "stdout") == "adding 2 3\n"
    assert text(chunks, "stderr") == "to stderr\n"
    assert (tmp_path / "cache" / sha / "mathy.py").read_text() == SOURCE

    # the same process and the same imported module serve the next call; the source is cached
    again, _ = call(pool, sha, "add", {"a": 1, "b": 1})
    assert again.value["pid"] == result.value["pid"]
    assert again.value["loaded"] == result.value["loaded"]
    assert sources.fetched == [sha]


def test_a_new_source_hash_is_a_new_module_load_in_the_same_process(
    pool: TaskPool, sources: Sources
) -> None:
    first, _ = call(pool, sources.add(SOURCE), "add", {"a": 1, "b": 1})
    newer, _ = call(
        pool, sources.add(SOURCE.replace("a + b", "a + b + 100")), "add", {"a": 1, "b": 1}
    )
    assert (first.value["sum"], newer.value["sum"]) == (2, 102)
    assert newer.value["pid"] == first.value["pid"]
    assert newer.value["loaded"] > first.value["loaded"]


def test_a_raising_task_fails_with_its_traceback_on_stderr(
    pool: TaskPool, sources: Sources
) -> None:
    result, chunks = call(pool, sources.add(SOURCE), "boom", {"message": "bad input 42"})
    assert result.outcome == "failed"
    assert result.reason == "task raised ValueError: bad input 42"
    stderr = text(chunks, "stderr")
    assert "Traceback (most recent call last)" in stderr
    assert 'mathy.py", line' in stderr and "raise ValueError(message)" in stderr
    assert "task_runner" not in stderr
    assert text(chunks, "stdout") == "before the error\n"
    # wrong arguments are the task's error too, and the process lives on
    result, _ = call(pool, sources.add(SOURCE), "add", {"a": 1})
    assert result.outcome == "failed" and "missing 1 required positional argument" in result.reason


def test_a_return_value_that_is_not_json_fails_saying_so(pool: TaskPool, sources: Sources) -> None:
    result, _ = call(pool, sources.add(SOURCE), "not_json", {})
    assert result.outcome == "failed"
    assert "not JSON-serialisable" in result.reason and "set" in result.reason


@pytest.mark.parametrize(
    ("function", "args", "why"),
    [
        ("leave", {"code": 3}, "task process died: exited with code 3"),
        ("kill_self", {}, "task process died: killed by signal 9 (SIGKILL)"),
    ],
)
def test_a_crash_takes_down_only_its_process(
    pool: TaskPool, sources: Sources, function: str, args: dict[str, Any], why: str
) -> None:
    sha = sources.add(SOURCE)
    before, _ = call(pool, sha, "add", {"a": 1, "b": 1})
    result, _ = call(pool, sha, function, args)
    assert (result.outcome, result.reason) == ("failed", why)
    after, _ = call(pool, sha, "add", {"a": 1, "b": 1})
    assert after.outcome == "passed"
    assert after.value["pid"] != before.value["pid"]


def test_a_timeout_kills_and_replaces_the_process(pool: TaskPool, sources: Sources) -> None:
    sha = sources.add(SOURCE)
    t0 = time.monotonic()
    result, _ = call(pool, sha, "sleep", {"seconds": 30}, timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert result.outcome == "timed_out"
    assert result.reason == "timed out after 0.5s (task process killed)"
    assert call(pool, sha, "sleep", {"seconds": 0})[0].value == "woke"


def test_a_process_over_its_memory_cap_is_killed(pool: TaskPool, sources: Sources) -> None:
    if not Path("/proc/self/statm").exists():
        pytest.skip("memory is measured through /proc")
    result, _ = call(pool, sources.add(SOURCE), "hog", {"mib": 600})
    assert result.outcome == "failed"
    assert "over the cap of 300 MiB" in result.reason


def test_a_process_left_holding_too_much_memory_is_replaced(
    pool: TaskPool, sources: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/proc/self/statm").exists():
        pytest.skip("memory is measured through /proc")
    # no look at its memory while it runs (a slow machine takes more than one look's time to
    # fill 350 MiB, and that look kills it): this is about the figure after the call
    monkeypatch.setattr(task_pool, "_RSS_EVERY", 60.0)
    sha = sources.add(SOURCE)
    small = [call(pool, sha, "keep", {"mib": 1})[0].value for _ in range(2)]
    assert small[0] == small[1]  # under the cap: the same process again
    big, _ = call(pool, sha, "keep", {"mib": 350})
    assert big.outcome == "passed" and big.value == small[0], big.reason
    # the runner said after its call how much it holds: over the cap, it is not used again
    assert call(pool, sha, "keep", {"mib": 1})[0].value != big.value


def test_a_call_sees_its_own_environment_and_nothing_left_from_the_last(
    pool: TaskPool, sources: Sources
) -> None:
    sha = sources.add(SOURCE)

    def env_of(env: dict[str, str]) -> Any:
        return pool.call(lease(sha, "getenv", {"name": "ONLY_ONCE"}), env, lambda c: None).run()

    first = env_of({"ONLY_ONCE": "here"}).value
    second = env_of({}).value
    changed = env_of({"ONLY_ONCE": "again"}).value
    assert first[1] == second[1] == changed[1]  # the same process each time
    assert [first[0], second[0], changed[0]] == ["here", None, "again"]


def test_what_a_task_does_to_the_environment_is_undone_for_the_next_call(
    pool: TaskPool, sources: Sources
) -> None:
    sha = sources.add(SOURCE)

    def run(function: str, args: dict[str, Any], env: dict[str, str]) -> Any:
        return pool.call(lease(sha, function, args), env, lambda c: None).run().value

    given = {"GIVEN": "kept"}
    pids = {run("getenv", {"name": "GIVEN"}, given)[1]}
    # a variable the task made is gone, one it changed or removed is as given, next call
    pids.add(run("meddle", {"name": "MADE", "value": "by the task"}, given))
    assert run("getenv", {"name": "MADE"}, given)[0] is None
    pids.add(run("meddle", {"name": "GIVEN", "value": "changed"}, given))
    assert run("getenv", {"name": "GIVEN"}, given)[0] == "kept"
    pids.add(run("meddle", {"name": "GIVEN", "value": None}, given))
    assert run("getenv", {"name": "GIVEN"}, given)[0] == "kept"
    # and one the worker itself passes to every call (PATH) comes back too
    pids.add(run("meddle", {"name": "PATH", "value": None}, given))
    assert run("getenv", {"name": "PATH"}, given)[0]
    assert len(pids) == 1  # all in the one process


def test_processes_are_recycled_after_max_calls(tmp_path: Path, sources: Sources) -> None:
    p = TaskPool(sources, PoolOptions(cache_dir=str(tmp_path), max_calls=2))
    try:
        sha = sources.add(SOURCE)
        pids = [call(p, sha, "add", {"a": 0, "b": 0})[0].value["pid"] for _ in range(4)]
    finally:
        p.close()
    assert pids[0] == pids[1] != pids[2] == pids[3]


def test_a_process_near_its_last_call_has_its_successor_started(
    tmp_path: Path, sources: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_pool, "SUCCESSOR_AHEAD", 2)
    p = TaskPool(sources, PoolOptions(cache_dir=str(tmp_path), max_calls=4))
    try:
        sha = sources.add(SOURCE)
        first = call(p, sha, "add", {"a": 0, "b": 0})[0].value["pid"]
        assert p._successors == []  # three calls to go: not yet
        second = call(p, sha, "add", {"a": 0, "b": 0})[0].value["pid"]
        # two calls to go: started now, beside the last ones
        [successor] = p._successors
        rest = [call(p, sha, "add", {"a": 0, "b": 0})[0].value["pid"] for _ in range(3)]
    finally:
        p.close()
    assert first == second == rest[0] == rest[1] != successor.popen.pid
    assert rest[2] == successor.popen.pid  # the fifth call: the successor, already started
    assert successor.popen.poll() is not None  # closed with the pool


def test_kill_from_another_thread_cancels(pool: TaskPool, sources: Sources) -> None:
    running = pool.call(lease(sources.add(SOURCE), "sleep", {"seconds": 30}), {}, lambda c: None)
    threading.Timer(0.3, running.kill, args=("canceled by a person",)).start()
    result = running.run()
    assert (result.outcome, result.reason) == ("canceled", "canceled by a person")


def test_async_tasks_and_big_output(pool: TaskPool, sources: Sources) -> None:
    sha = sources.add(SOURCE)
    assert call(pool, sha, "later", {"x": 21})[0].value == 42
    result, chunks = call(pool, sha, "chatty", {"n": 20000})
    assert result.value == 20000
    lines = text(chunks, "stdout").splitlines()
    assert len(lines) == 20000 and lines[-1] == "line 19999"


def test_sources_the_server_does_not_hold_fail_the_job(pool: TaskPool) -> None:
    result, _ = call(pool, "ab" * 32, "add", {})
    assert result.outcome == "failed"
    assert "could not fetch the task's source" in result.reason
    result, _ = call(pool, "", "add", {})
    assert result.reason == "task 'add' is no longer registered on the server"


def test_a_source_that_does_not_match_its_hash_is_refused(pool: TaskPool, sources: Sources) -> None:
    sources.by_hash["cd" * 32] = SOURCE.encode()
    result, _ = call(pool, "cd" * 32, "add", {"a": 1, "b": 2})
    assert result.outcome == "failed"
    assert "does not match its hash" in result.reason


WRITER = """
import os

import corral


@corral.task
def write(name: str) -> dict:
    before = sorted(os.listdir("."))
    if name:
        with open(name, "w") as f:
            f.write("x")
    return {"cwd": os.getcwd(), "before": before}


@corral.task
def opened_up() -> dict:
    os.chmod(".", 0o755)  # empty, but no longer as the worker made it
    return {"cwd": os.getcwd(), "before": sorted(os.listdir("."))}
"""


def test_every_call_starts_in_an_empty_directory_and_none_is_left_behind(
    tmp_path: Path, sources: Sources
) -> None:
    sha = sources.add(WRITER)
    root = tmp_path / "work"
    root.mkdir()
    pool = TaskPool(sources, PoolOptions(cache_dir=str(tmp_path / "c2"), workdir_root=str(root)))
    try:
        first, _ = call(pool, sha, "write", {"name": ""})
        # an empty directory is kept and handed to the next call
        second, _ = call(pool, sha, "write", {"name": "left.txt"})
        assert second.value["cwd"] == first.value["cwd"]
        # a directory with something in it is removed: the next call gets a new one
        assert not Path(second.value["cwd"]).exists()
        third, _ = call(pool, sha, "write", {"name": ""})
        assert third.value["cwd"] != second.value["cwd"]
        # empty but opened to others: not handed on either
        fourth, _ = call(pool, sha, "opened_up", {})
        assert fourth.value["cwd"] == third.value["cwd"]
        assert not Path(fourth.value["cwd"]).exists()
        fifth, _ = call(pool, sha, "write", {"name": ""})
        assert fifth.value["cwd"] != fourth.value["cwd"]
        assert [r.value["before"] for r in (first, second, third, fourth, fifth)] == [[]] * 5
    finally:
        pool.close()
    assert list(root.iterdir()) == []  # closing the pool removes the spare directories


def test_a_new_task_process_imports_only_what_a_call_needs(tmp_path: Path) -> None:
    # each replacement process pays its imports before its first call (one every
    # `max_calls`); asyncio, the registry's parser and the run spec once tripled that
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import corral.worker.task_runner\n"
        "import corral\n"  # what every task file does for `@corral.task`
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": task_pool._PACKAGE_ROOT, "PATH": "/usr/bin:/bin"},
    )
    loaded = set(done.stdout.split())
    assert "corral.task_mark" in loaded
    heavy = {"asyncio", "corral.registry", "corral.domain.runspec", "logging", "inspect"}
    assert loaded & heavy == set()


def test_the_runner_says_whether_a_call_left_its_directory_as_given(tmp_path: Path) -> None:
    from corral.worker import task_runner

    made = tmp_path / "call"
    made.mkdir(mode=0o700)
    proc = task_pool._Process.__new__(task_pool._Process)
    reply = task_runner._with_rss('{"ok":true,"result":1}', str(made))
    assert proc.note_reply(reply) is True and proc.reported_rss > 0
    (made / "left").write_text("x")
    assert proc.note_reply(task_runner._with_rss('{"ok":true,"result":1}', str(made))) is False
    (made / "left").unlink()
    made.chmod(0o755)
    assert proc.note_reply(task_runner._with_rss('{"ok":true,"result":1}', str(made))) is False
    # no directory named, or a reply from an older runner: the worker looks itself
    assert proc.note_reply(task_runner._with_rss('{"ok":true,"result":1}')) is False
    assert proc.note_reply(b'{"ok":true,"result":1}') is False


def test_a_process_a_task_leaves_running_lives_no_longer_than_its_task_process(
    tmp_path: Path, sources: Sources
) -> None:
    sha = sources.add(SOURCE)
    p = TaskPool(sources, PoolOptions(cache_dir=str(tmp_path), max_calls=2))
    try:
        first, _ = call(p, sha, "leave_running", {})
        child, runner = first.value
        # between calls it may go on (a pool a task module keeps is used by the next call)
        again, _ = call(p, sha, "getenv", {"name": "X"})
        assert again.value[1] == runner and running(child)
        # the runner is replaced after its second call: what its tasks left goes with it
        call(p, sha, "getenv", {"name": "X"})
        assert gone_within(child, 5), "a task's process outlived its task process"
        # and the same when the worker closes its task processes
        last, _ = call(p, sha, "leave_running", {})
    finally:
        p.close()
    assert gone_within(last.value[0], 5), "a task's process outlived the worker's stop"


@pytest.mark.parametrize("followed", [True, False], ids=["cgroup", "process group alone"])
def test_a_process_a_task_detached_lives_no_longer_than_its_task_process(
    tmp_path: Path, sources: Sources, monkeypatch: pytest.MonkeyPatch, followed: bool
) -> None:
    if followed and tracker() is None:
        pytest.skip("no writable cgroup v1 pids hierarchy: task processes are not followed")
    if not followed:
        monkeypatch.setattr(task_pool, "tracker", lambda: None)
    p = TaskPool(sources, PoolOptions(cache_dir=str(tmp_path)))
    try:
        result, _ = call(p, sources.add(SOURCE), "leave_detached", {})
        child = result.value
    finally:
        p.close()
    try:
        if followed:
            assert gone_within(child, 5), "a process a task detached outlived its task process"
        else:
            assert running(child)  # it does escape the group: the case above is not vacuous
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_a_process_left_by_a_task_whose_runner_died_goes_too(
    pool: TaskPool, sources: Sources
) -> None:
    result, chunks = call(pool, sources.add(SOURCE), "leave_running_and_die", {})
    assert result.reason == "task process died: exited with code 3"
    child = int(text(chunks, "stdout").split()[0])
    assert gone_within(child, 5), "a task's process outlived its dead task process"
