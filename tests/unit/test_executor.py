"""Tests for the stdlib-only job executor, using real (fast) subprocesses."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from corral.worker import executor
from corral.worker.executor import Chunk, ExecResult, ExecSpec, Execution
from corral.worker.tracking import tracker


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.threads: set[int] = set()

    def __call__(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)
        self.threads.add(threading.get_ident())

    def text(self, stream: str) -> str:
        return "".join(c.data for c in self.chunks if c.stream == stream)


def run(spec: ExecSpec) -> tuple[ExecResult, Recorder]:
    rec = Recorder()
    result = Execution(spec, rec).run()
    return result, rec


def py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def alive(pid: int) -> bool:
    """True while pid is a live (non-zombie) process; PID 1 here may never reap orphans."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def wait_dead(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.01)
    return not alive(pid)


# --- spec validation -------------------------------------------------------------------------


def test_exactly_one_of_command_and_argv() -> None:
    with pytest.raises(ValueError):
        ExecSpec()
    with pytest.raises(ValueError):
        ExecSpec(command="true", argv=("true",))
    with pytest.raises(ValueError):
        ExecSpec(argv=())


# --- exit codes ------------------------------------------------------------------------------


def test_exit_zero_passes() -> None:
    result, _ = run(ExecSpec(command="true"))
    assert result.outcome == "passed"
    assert result.exit_code == 0
    assert result.reason == "exit 0"
    assert result.started_at <= result.finished_at
    tracked = {"cgroup_version"} if tracker() is not None else set()
    assert set(result.resources) == {"user_cpu_s", "sys_cpu_s", "wall_s", *tracked}


def test_nonzero_exit_fails() -> None:
    result, _ = run(ExecSpec(argv=("sh", "-c", "exit 3")))
    assert (result.outcome, result.exit_code, result.reason) == ("failed", 3, "exit 3")


def test_shell_builtin_command_is_not_run_as_argv() -> None:
    # "exit 3" looks like a plain word list but is a shell builtin; it must still go to sh.
    result, _ = run(ExecSpec(command="exit 3"))
    assert (result.outcome, result.exit_code) == ("failed", 3)


def test_plain_command_with_arguments() -> None:
    result, rec = run(ExecSpec(command="echo hello world"))
    assert result.outcome == "passed"
    assert rec.text("stdout") == "hello world\n"


def test_missing_command_in_shell_form_is_exit_127() -> None:
    result, _ = run(ExecSpec(command="no-such-command-corral-xyz"))
    assert (result.outcome, result.exit_code) == ("failed", 127)


def test_killed_by_signal() -> None:
    result, _ = run(ExecSpec(command="kill -9 $$"))
    assert result.outcome == "failed"
    assert result.exit_code == -9
    assert result.reason == "killed by signal 9 (SIGKILL)"


def test_missing_program_in_argv_form_could_not_start() -> None:
    result, rec = run(ExecSpec(argv=("no-such-command-corral-xyz",)))
    assert result.outcome == "failed"
    assert result.exit_code is None
    assert result.reason.startswith("could not start: [Errno 2]")
    assert "no-such-command-corral-xyz" in result.reason
    assert rec.chunks == []


BUSY_LOOP = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"


def test_resources_reported() -> None:
    result, _ = run(ExecSpec(argv=py(BUSY_LOOP)))
    assert result.outcome == "passed"
    assert result.resources["user_cpu_s"] + result.resources["sys_cpu_s"] >= 0.1
    assert result.resources["wall_s"] >= 0.2


def test_max_rss_is_the_job_s_own_never_the_worker_s() -> None:
    import resource

    # a worker's peak far above what its jobs use: a vforked job inherits it at exec
    ballast = bytearray(300 * 2**20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    mine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    small, _ = run(ExecSpec(command="true"))
    assert "max_rss_kib" not in small.resources  # not the worker's 300 MiB
    hog = f"b = bytearray({mine * 1024 + 200 * 2**20})\nfor i in range(0, len(b), 4096): b[i] = 1"
    big, _ = run(ExecSpec(argv=py(hog)))
    assert big.outcome == "passed", big
    assert big.resources["max_rss_kib"] > mine + 190 * 1024  # the job's own peak
    del ballast


# --- output ----------------------------------------------------------------------------------


def test_stdout_and_stderr_kept_apart_and_ordered() -> None:
    script = "for i in $(seq 1 2000); do echo out$i; echo err$i >&2; done"
    result, rec = run(ExecSpec(command=script, chunk_interval=0.001))
    assert result.outcome == "passed"
    assert rec.text("stdout").splitlines() == [f"out{i}" for i in range(1, 2001)]
    assert rec.text("stderr").splitlines() == [f"err{i}" for i in range(1, 2001)]
    for stream in ("stdout", "stderr"):
        stamps = [c.ts for c in rec.chunks if c.stream == stream]
        assert stamps == sorted(stamps)
    assert result.output_bytes == len(rec.text("stdout")) + len(rec.text("stderr"))
    assert not result.truncated


def test_output_is_delivered_on_the_calling_thread() -> None:
    _, rec = run(ExecSpec(command="echo hi"))
    assert rec.threads == {threading.get_ident()}


def test_chunks_are_coalesced() -> None:
    script = "echo 1; sleep 0.05; echo 2; sleep 0.05; echo 3"
    result, rec = run(ExecSpec(command=script, chunk_interval=2))
    assert result.outcome == "passed"
    assert [c.data for c in rec.chunks] == ["1\n2\n3\n"]


def test_chunks_are_delivered_while_running() -> None:
    seen: list[float] = []
    spec = ExecSpec(command="echo early; sleep 0.5; echo late", chunk_interval=0.01)
    Execution(spec, lambda c: seen.append(time.monotonic())).run()
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 0.3


def test_multibyte_utf8_split_across_reads() -> None:
    code = (
        "import sys, time\n"
        "out = sys.stdout.buffer\n"
        "for part in (b'a\\xe2\\x82', b'\\xac b \\xf0\\x9f', b'\\x98', b'\\x80 c'):\n"
        "    out.write(part); out.flush(); time.sleep(0.05)\n"
    )
    result, rec = run(ExecSpec(argv=py(code), chunk_interval=0))
    assert result.outcome == "passed"
    assert len(rec.chunks) >= 3  # really delivered in pieces
    assert rec.text("stdout") == "a\u20ac b \U0001f600 c"


def test_invalid_utf8_is_replaced() -> None:
    code = "import sys; sys.stdout.buffer.write(b'x\\xffy')"
    _, rec = run(ExecSpec(argv=py(code)))
    assert rec.text("stdout") == "x\ufffdy"


def test_incomplete_utf8_at_end_of_output_is_replaced() -> None:
    # the decoder still holds the two bytes when the pipe closes; they must not be lost
    code = "import sys; sys.stdout.buffer.write(b'ab\\xe2\\x82')"
    result, rec = run(ExecSpec(argv=py(code)))
    assert result.outcome == "passed"
    assert rec.text("stdout") == "ab\ufffd"
    assert rec.text("stderr") == ""


def test_text_held_back_by_the_masker_is_shown_at_the_end() -> None:
    # "sec" could be the start of the secret, so it waits for more output; EOF settles it
    result, rec = run(ExecSpec(command="printf 'a sec'; printf 'x secret' >&2", mask=("secret",)))
    assert result.outcome == "passed"
    assert rec.text("stdout") == "a sec"
    assert rec.text("stderr") == "x ***"


def test_log_limit_truncates_but_drains_everything() -> None:
    total = 20 * 1024 * 1024
    limit = 1024 * 1024
    t0 = time.monotonic()
    result, rec = run(ExecSpec(command=f"yes abcdefghijklmno | head -c {total}", log_limit=limit))
    elapsed = time.monotonic() - t0
    assert result.outcome == "passed"
    assert result.truncated
    assert result.output_bytes == total
    assert elapsed < 20  # a deadlock would never end; a busy machine is only slower
    last = rec.chunks[-1]
    assert last.stream == "stderr"
    assert last.data == (
        f"\n[corral: log truncated after 1.0 MiB; {total - limit} more bytes dropped]\n"
    )
    assert len(rec.text("stdout")) == limit
    assert sum(1 for c in rec.chunks if "log truncated" in c.data) == 1


def test_log_limit_shared_between_streams() -> None:
    result, rec = run(
        ExecSpec(
            command="head -c 600 /dev/zero | tr '\\0' o; head -c 600 /dev/zero | tr '\\0' e >&2",
            log_limit=1000,
        )
    )
    assert result.truncated
    assert result.output_bytes == 1200
    kept = rec.text("stdout") + rec.text("stderr").split("\n[corral:")[0]
    assert len(kept) == 1000
    assert "200 more bytes dropped" in rec.chunks[-1].data


def test_truncation_does_not_split_a_character() -> None:
    code = "import sys; sys.stdout.write('\\u00e9' * 1000)"
    result, rec = run(ExecSpec(argv=py(code), env={"PYTHONIOENCODING": "utf-8"}, log_limit=1001))
    assert result.truncated
    assert result.output_bytes == 2000
    assert rec.text("stdout") == "\u00e9" * 500
    assert "1000 more bytes dropped" in rec.chunks[-1].data


def test_output_exactly_at_limit_is_not_truncated() -> None:
    result, rec = run(ExecSpec(command="echo hi", log_limit=3))
    assert not result.truncated
    assert [c.data for c in rec.chunks] == ["hi\n"]
    result, rec = run(ExecSpec(command="echo hi!", log_limit=3))
    assert result.truncated
    assert rec.text("stdout") == "hi!"
    assert "1 more bytes dropped" in rec.chunks[-1].data


# --- environment and working directory -------------------------------------------------------


def parse_env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_env_is_minimal_plus_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_LEAK", "secret")
    result, rec = run(ExecSpec(argv=("env",), env={"FOO": "bar baz"}))
    assert result.outcome == "passed"
    env = parse_env(rec.text("stdout"))
    assert set(env) == {"PATH", "HOME", "LANG", "TMPDIR", "FOO"}
    assert env["FOO"] == "bar baz"
    assert env["LANG"] == "C.UTF-8"
    assert env["TMPDIR"] == os.path.join(env["HOME"], "tmp")
    assert os.path.basename(env["HOME"]).startswith("attempt-")


def test_env_values_reach_the_job_byte_for_byte() -> None:
    # encoded as os.fsencode would (the job's environment is handed to Popen as bytes),
    # non-ASCII and undecodable bytes alike
    odd = os.fsdecode(b"caf\xc3\xa9 \xff\xfe")
    result, rec = run(ExecSpec(command='printf %s "$ODD" | od -An -tx1', env={"ODD": odd}))
    assert result.outcome == "passed"
    assert bytes.fromhex(rec.text("stdout").replace(" ", "").replace("\n", "")) == os.fsencode(odd)


def test_env_extras_override_base() -> None:
    _, rec = run(ExecSpec(argv=("env",), env={"LANG": "C"}))
    assert parse_env(rec.text("stdout"))["LANG"] == "C"


def test_inherit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_INHERITED", "yes")
    _, rec = run(ExecSpec(argv=("env",), env={"FOO": "1"}, inherit_env=True))
    env = parse_env(rec.text("stdout"))
    assert env["CORRAL_TEST_INHERITED"] == "yes"
    assert env["FOO"] == "1"


def test_fresh_workdir_per_run_removed_afterwards(tmp_path: Path) -> None:
    script = 'pwd; test -d "$TMPDIR" && echo tmp-ok; echo data > file; mkdir -p a/b; touch a/b/c'
    dirs = []
    for _ in range(2):
        result, rec = run(ExecSpec(command=script, workdir_root=str(tmp_path)))
        assert result.outcome == "passed"
        workdir, tmp_ok = rec.text("stdout").splitlines()
        assert tmp_ok == "tmp-ok"
        assert Path(workdir).parent == tmp_path
        assert not Path(workdir).exists()
        dirs.append(workdir)
    assert dirs[0] != dirs[1]
    assert list(tmp_path.iterdir()) == []


def test_keep_workdir(tmp_path: Path) -> None:
    result, rec = run(
        ExecSpec(command="pwd; echo data > file", workdir_root=str(tmp_path), keep_workdir=True)
    )
    workdir = Path(rec.text("stdout").strip())
    assert result.outcome == "passed"
    assert (workdir / "file").read_text() == "data\n"
    assert (workdir / "tmp").is_dir()


def test_workdir_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "x" / "y"
    result, _ = run(ExecSpec(command="true", workdir_root=str(root)))
    assert result.outcome == "passed"
    assert root.is_dir()


def test_relative_workdir_root_gives_an_absolute_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result, rec = run(ExecSpec(command="pwd", workdir_root="roots", keep_workdir=True))
    assert result.outcome == "passed"
    workdir = rec.text("stdout").strip()
    assert os.path.isabs(workdir)
    assert Path(workdir).parent == tmp_path / "roots"
    assert (Path(workdir).stat().st_mode & 0o777) == 0o700


def test_workdir_name_already_taken_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = iter([1, 2])
    monkeypatch.setattr(executor.random, "getrandbits", lambda bits: next(picks))
    (tmp_path / "attempt-000000000001").mkdir()
    assert executor._make_workdir(str(tmp_path)) == str(tmp_path / "attempt-000000000002")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "attempt-000000000001",
        "attempt-000000000002",
    ]


def test_stdin_is_dev_null_and_new_session() -> None:
    code = "import os, sys; print(repr(sys.stdin.read()), os.getsid(0) == os.getpid())"
    # Put readable data on our own fd 0, so an inherited stdin would show up in the output.
    r, w = os.pipe()
    os.write(w, b"leaked")
    os.close(w)
    saved = os.dup(0)
    os.dup2(r, 0)
    try:
        _, rec = run(ExecSpec(argv=py(code)))
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(r)
    assert rec.text("stdout") == "'' True\n"


# --- timeouts, cancel, kill ------------------------------------------------------------------


def test_timeout_kills_whole_group_including_grandchild() -> None:
    t0 = time.monotonic()
    result, rec = run(ExecSpec(command="sleep 100 & echo $!; sleep 100", timeout=0.5))
    elapsed = time.monotonic() - t0
    assert result.outcome == "timed_out"
    assert result.exit_code == -15
    assert result.reason == "timed out after 0.5s (SIGTERM)"
    assert 0.5 <= elapsed < 8
    grandchild = int(rec.text("stdout"))
    assert wait_dead(grandchild)


TERM_REPORTER = """
import signal, sys, time
def on_term(signum, frame):
    print("grandchild got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(100)
"""


def test_timeout_sends_sigterm_to_whole_group() -> None:
    # The main shell ignores TERM and waits for the grandchild, so only a group-wide TERM can
    # make the grandchild report; otherwise both die silently by SIGKILL after the grace.
    script = f"{sys.executable} -c '{TERM_REPORTER}' & trap '' TERM; wait"
    result, rec = run(ExecSpec(command=script, timeout=1.0, grace=1.0))
    assert result.outcome == "timed_out"
    assert result.reason == "timed out after 1s (SIGTERM)"
    assert rec.text("stdout") == "ready\ngrandchild got SIGTERM\n"


def test_sigterm_ignoring_child_gets_sigkill_after_grace() -> None:
    t0 = time.monotonic()
    result, _ = run(ExecSpec(command="trap '' TERM; sleep 100", timeout=0.3, grace=0.5))
    elapsed = time.monotonic() - t0
    assert result.outcome == "timed_out"
    assert result.exit_code == -9
    assert result.reason == "timed out after 0.3s (SIGTERM, then SIGKILL after 0.5s grace)"
    assert 0.8 <= elapsed < 8


def test_cancel_from_another_thread() -> None:
    rec = Recorder()
    ex = Execution(ExecSpec(command="echo started; sleep 100"), rec)
    timer = threading.Timer(0.3, ex.cancel, args=("user asked",))
    t0 = time.monotonic()
    timer.start()
    result = ex.run()
    timer.join()
    assert result.outcome == "canceled"
    assert result.reason == "user asked"
    assert result.exit_code == -15
    assert time.monotonic() - t0 < 8
    assert rec.text("stdout") == "started\n"


def test_cancel_respects_grace_then_kills() -> None:
    ex = Execution(ExecSpec(command="trap '' TERM; sleep 100", grace=0.4), Recorder())
    threading.Timer(0.2, ex.cancel).start()
    t0 = time.monotonic()
    result = ex.run()
    assert (result.outcome, result.reason, result.exit_code) == ("canceled", "canceled", -9)
    assert 0.6 <= time.monotonic() - t0 < 8


def test_kill_is_immediate() -> None:
    ex = Execution(ExecSpec(command="trap '' TERM; sleep 100", grace=30), Recorder())
    threading.Timer(0.2, ex.kill, args=("shutdown",)).start()
    t0 = time.monotonic()
    result = ex.run()
    assert (result.outcome, result.reason, result.exit_code) == ("canceled", "shutdown", -9)
    assert time.monotonic() - t0 < 8


def test_kill_escalates_a_pending_cancel() -> None:
    ex = Execution(ExecSpec(command="trap '' TERM; sleep 100", grace=30), Recorder())
    threading.Timer(0.2, ex.cancel, args=("first",)).start()
    threading.Timer(0.4, ex.kill).start()
    t0 = time.monotonic()
    result = ex.run()
    assert (result.outcome, result.reason, result.exit_code) == ("canceled", "first", -9)
    assert time.monotonic() - t0 < 8


def test_cancel_before_run_never_starts(tmp_path: Path) -> None:
    ex = Execution(ExecSpec(command="touch started", workdir_root=str(tmp_path)), Recorder())
    ex.cancel("too late")
    result = ex.run()
    assert (result.outcome, result.reason, result.exit_code) == ("canceled", "too late", None)
    assert ex.pid is None
    assert list(tmp_path.iterdir()) == []


def test_cancel_after_run_is_harmless() -> None:
    ex = Execution(ExecSpec(command="true"), Recorder())
    result = ex.run()
    ex.cancel()
    ex.kill()
    assert result.outcome == "passed"
    assert ex.pid is not None
    with pytest.raises(RuntimeError):
        ex.run()


def test_background_child_holding_stdout_does_not_hang() -> None:
    t0 = time.monotonic()
    result, rec = run(ExecSpec(command="sleep 100 & echo $!; echo done"))
    assert result.outcome == "passed"
    assert time.monotonic() - t0 < 8
    pid_line, done = rec.text("stdout").splitlines()
    assert done == "done"
    assert wait_dead(int(pid_line))


ESCAPE = """
import os, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    os.write(w, b"x")
    time.sleep(30)
    os._exit(0)
os.read(r, 1)
print(pid, flush=True)
print("done", flush=True)
"""


def test_escaped_grandchild_holding_stdout_does_not_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    # setsid escapes the group kill; with no cgroup to follow the job, only the drain cap keeps
    # run() from waiting on the pipe.
    monkeypatch.setattr(executor, "tracker", lambda: None)
    t0 = time.monotonic()
    result, rec = run(ExecSpec(argv=py(ESCAPE)))
    elapsed = time.monotonic() - t0
    pid_line, done = rec.text("stdout").splitlines()
    try:
        assert alive(int(pid_line))  # it really escaped, so the test means something
        assert result.outcome == "passed"
        assert done == "done"
        assert elapsed < 8
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_line), 9)


def test_escaped_grandchild_dies_with_the_job_where_a_cgroup_follows_it() -> None:
    if tracker() is None:
        pytest.skip("no writable cgroup v1 pids hierarchy: jobs are not followed by a cgroup")
    t0 = time.monotonic()
    result, rec = run(ExecSpec(argv=py(ESCAPE)))
    elapsed = time.monotonic() - t0
    pid_line, done = rec.text("stdout").splitlines()
    try:
        assert wait_dead(int(pid_line), within=0.1)  # killed before run() returned
        assert result.outcome == "passed" and done == "done"
        assert result.reason == "exit 0; killed 1 process it left running"
        assert result.resources["strays_killed"] == 1.0
        assert result.resources["cgroup_version"] == 1.0
        assert elapsed < 0.5  # not the drain cap: the pipe closed when the stray died
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_line), 9)


def test_callback_error_kills_the_job() -> None:
    def boom(chunk: Chunk) -> None:
        raise RuntimeError("callback failed")

    ex = Execution(ExecSpec(command="echo hi; sleep 100", chunk_interval=0), boom)
    with pytest.raises(RuntimeError, match="callback failed"):
        ex.run()
    assert ex.pid is not None
    assert wait_dead(ex.pid)


def test_many_tiny_runs_do_not_leak_fds() -> None:
    run(ExecSpec(command="true"))  # what is kept for every job (the cgroup of tracking.py)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        result, _ = run(ExecSpec(command="true"))
        assert result.outcome == "passed"
    assert len(os.listdir("/proc/self/fd")) == before


# --- noticing the exit -----------------------------------------------------------------------


def test_short_jobs_end_without_waiting_out_the_drain() -> None:
    # The executor holds its own copies of the pipes' write ends until the job is reaped; were
    # they kept any longer, every run would wait out the drain after exit (0.5 s) instead.
    t0 = time.monotonic()
    for _ in range(5):
        result, _ = run(ExecSpec(command="true"))
        assert result.outcome == "passed"
    assert time.monotonic() - t0 < 2.0


def test_job_that_closes_its_output_early_runs_to_its_end() -> None:
    t0 = time.monotonic()
    result, rec = run(ExecSpec(command="echo before; exec >&- 2>&-; sleep 0.3; exit 3"))
    assert (result.outcome, result.exit_code) == ("failed", 3)
    assert time.monotonic() - t0 >= 0.3
    assert rec.text("stdout") == "before\n"


@pytest.mark.parametrize(
    ("command", "stdout"),
    [
        ("echo out; echo err >&2", "out\n"),
        ("sleep 100 & echo $!; echo done", None),  # a background child holds stdout
        ("exec >&- 2>&-; sleep 0.2", ""),  # output closed long before the exit
    ],
)
def test_exit_is_noticed_without_a_pidfd(
    monkeypatch: pytest.MonkeyPatch, command: str, stdout: str | None
) -> None:
    # Where pidfd_open is missing, end of file on both pipes hints at the exit, then polling.
    monkeypatch.setattr(executor, "_pidfd_open", lambda pid: None)
    t0 = time.monotonic()
    result, rec = run(ExecSpec(command=command))
    assert result.outcome == "passed"
    assert time.monotonic() - t0 < 8
    if stdout is None:
        pid_line, done = rec.text("stdout").splitlines()
        assert done == "done"
        assert wait_dead(int(pid_line))
    else:
        assert rec.text("stdout") == stdout
        assert rec.text("stderr") == ("err\n" if "err" in command else "")


def test_no_descriptors_left_behind_without_a_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "_pidfd_open", lambda pid: None)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        result, _ = run(ExecSpec(command="echo hi"))
        assert result.outcome == "passed"
    assert len(os.listdir("/proc/self/fd")) == before


# --- finding the program ---------------------------------------------------------------------


def _program(directory: Path, says: str, mode: int = 0o755) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "corral-prog-xyz"
    path.write_text(f"#!/bin/sh\necho {says}\n")
    path.chmod(mode)


def _both_forms(path: str) -> list[ExecSpec]:
    env = {"PATH": path}
    return [
        ExecSpec(command="corral-prog-xyz", env=env),
        ExecSpec(argv=("corral-prog-xyz",), env=env),
    ]


def test_the_first_program_on_path_runs(tmp_path: Path) -> None:
    _program(tmp_path / "a", "a")
    _program(tmp_path / "b", "b")
    for spec in _both_forms(f"{tmp_path / 'a'}/:{tmp_path / 'b'}:/usr/bin:/bin"):
        result, rec = run(spec)
        assert (result.outcome, rec.text("stdout")) == ("passed", "a\n")


@pytest.mark.parametrize("blocker", ["not executable", "a directory", "no such interpreter"])
def test_a_name_on_path_that_exec_cannot_run_is_passed_over(tmp_path: Path, blocker: str) -> None:
    first = tmp_path / "a"
    if blocker == "not executable":
        _program(first, "a", mode=0o644)
    elif blocker == "a directory":
        (first / "corral-prog-xyz").mkdir(parents=True)
    else:
        first.mkdir()
        (first / "corral-prog-xyz").write_text("#!/no/such/interpreter\n")
        (first / "corral-prog-xyz").chmod(0o755)
    _program(tmp_path / "b", "b")
    for spec in _both_forms(f"{first}:{tmp_path / 'b'}:/usr/bin:/bin"):
        result, rec = run(spec)
        assert (result.outcome, rec.text("stdout")) == ("passed", "b\n"), blocker


def test_a_relative_path_entry_is_the_jobs_own(tmp_path: Path) -> None:
    _program(tmp_path / "b", "b")

    def prepare(workdir: str) -> None:
        _program(Path(workdir, "bin"), "workdir")

    for form in _both_forms(f"bin:{tmp_path / 'b'}:/usr/bin:/bin"):
        spec = ExecSpec(command=form.command, argv=form.argv, env=form.env, prepare=prepare)
        result, rec = run(spec)
        assert (result.outcome, rec.text("stdout")) == ("passed", "workdir\n")


def test_on_path_answers_only_what_it_can_vouch_for(tmp_path: Path) -> None:
    _program(tmp_path / "b", "b")
    found = str(tmp_path / "b" / "corral-prog-xyz")
    assert executor._on_path("corral-prog-xyz", {"PATH": f"/nonexistent:{tmp_path / 'b'}"}) == found
    assert executor._on_path("sh", {}) in ("/bin/sh", "/usr/bin/sh")  # os.defpath
    assert executor._on_path("corral-prog-xyz", {"PATH": "/nonexistent"}) is None
    assert executor._on_path("corral-prog-xyz", {"PATH": f":{tmp_path / 'b'}"}) is None
    assert executor._on_path("b/corral-prog-xyz", {"PATH": str(tmp_path)}) is None
    assert executor._on_path("", {"PATH": str(tmp_path)}) is None
