"""Probes of the sandbox, the limits and --run-as, through the real executor and real processes.

Each probe prints STARTED first and a second marker only if the forbidden act worked; tests
assert the first and not the second, and run the same probe without the protection to show
it would have worked.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from corral.worker import executor
from corral.worker.executor import Chunk, ExecResult, ExecSpec, Execution
from corral.worker.limits import offer
from corral.worker.sandbox import Sandbox, check, find_bwrap, find_python
from corral.worker.tracking import tracker

JOB_USER = "corral-job"
PY = find_python()


Missing = Callable[[str, str], NoReturn]


@pytest.fixture(scope="module")
def bwrap(missing_service: Missing) -> str:
    path = find_bwrap()
    why = check(path)
    if why:
        missing_service("bwrap", why)
    assert path is not None
    return path


@pytest.fixture(scope="module")
def job_user(missing_service: Missing) -> tuple[int, int]:
    if os.geteuid() != 0:
        missing_service("root", "--run-as tests need root (to switch users)")
    try:
        entry = pwd.getpwnam(JOB_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", JOB_USER],
            check=True,
        )
        entry = pwd.getpwnam(JOB_USER)
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def workroot() -> Iterator[Path]:
    # pytest's own temp root is 0700: the job user could not reach a workdir under it
    root = Path(f"/tmp/corral-probes-{os.getpid()}")
    root.mkdir(mode=0o711, exist_ok=True)
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def out_to(out: list[str]) -> Callable[[Chunk], None]:
    return lambda c: out.append(c.data)


def run(code: str, workroot: Path, **kw: Any) -> tuple[ExecResult, str]:
    out: list[str] = []
    spec = ExecSpec(
        argv=(PY, "-c", textwrap.dedent(code)),
        workdir_root=str(workroot),
        timeout=kw.pop("timeout", 20.0),
        grace=0.5,
        **kw,
    )
    result = Execution(spec, lambda c: out.append(c.data)).run()
    return result, "".join(out)


@pytest.fixture
def outside() -> Iterator[Path]:
    # not under /tmp: the sandbox's /tmp is a throw-away tmpfs, where writes do succeed
    d = Path(f"/var/tmp/corral-probe-{os.getpid()}")
    d.mkdir(exist_ok=True)
    yield d / "outside.txt"
    with contextlib.suppress(OSError):
        (d / "outside.txt").unlink()
    d.rmdir()


def test_a_sandboxed_job_cannot_write_outside_its_working_directory(
    bwrap: str, workroot: Path, outside: Path
) -> None:
    target = outside
    probe = f"""
        print("STARTED", flush=True)
        open("mine.txt", "w").write("ok")  # its own directory is writable
        print("OWN-OK", flush=True)
        open({str(target)!r}, "w").write("x")
        print("WROTE-OUTSIDE")
    """
    result, log = run(probe, workroot, sandbox=Sandbox(bwrap))
    assert "STARTED" in log and "OWN-OK" in log, log
    assert "WROTE-OUTSIDE" not in log and not target.exists()
    assert "Read-only file system" in log
    assert result.outcome == "failed" and result.resources["pid_namespace"] == 1.0

    result, log = run(probe, workroot)  # the same probe, unboxed
    assert "WROTE-OUTSIDE" in log and target.exists()
    target.unlink()


def test_a_job_cannot_read_the_worker_credential(
    bwrap: str, job_user: tuple[int, int], workroot: Path
) -> None:
    # the worker's state directory: its token file is 0600, as corral writes it
    home = Path(f"/tmp/corral-probe-home-{os.getpid()}")
    home.mkdir(mode=0o755, exist_ok=True)
    token = home / "token"
    token.write_text("crl_worker_secret_value\n")
    token.chmod(0o600)
    probe = f"""
        import os
        print("STARTED", flush=True)
        for path in ({str(token)!r}, "/proc/{os.getpid()}/environ"):
            try:
                data = open(path, "rb").read()
            except OSError as exc:
                print("DENIED", path, type(exc).__name__, flush=True)
            else:
                print("READ", path, b"crl_worker_secret_value" in data, flush=True)
    """
    try:
        _, log = run(probe, workroot, user=job_user)
        assert "STARTED" in log, log
        assert "READ" not in log and log.count("DENIED") == 2, log

        box = Sandbox(bwrap, hide=(str(home),))
        _, log = run(probe, workroot, sandbox=box)
        assert "STARTED" in log and "READ" not in log, log  # hidden, and its own /proc

        _result, log = run(probe, workroot)  # the worker's own account can read both
        assert f"READ {token} True" in log, log
    finally:
        token.unlink()
        home.rmdir()


def listener() -> tuple[socket.socket, list[bytes]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    got: list[bytes] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            got.append(conn.recv(100))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return srv, got


def test_a_sandboxed_job_has_no_network_unless_it_asks(bwrap: str, workroot: Path) -> None:
    srv, got = listener()
    port = srv.getsockname()[1]
    probe = f"""
        import socket
        print("STARTED", flush=True)
        s = socket.create_connection(("127.0.0.1", {port}), timeout=3)
        s.sendall(b"hello")
        print("CONNECTED", flush=True)
    """
    try:
        result, log = run(probe, workroot, sandbox=Sandbox(bwrap))
        assert "STARTED" in log and "CONNECTED" not in log, log
        assert result.outcome == "failed" and got == []

        result, log = run(probe, workroot, sandbox=Sandbox(bwrap, network=True))
        assert "CONNECTED" in log, log
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [b"hello"]
    finally:
        srv.close()


def survivors(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    mark = f"{os.getpid()}.{time.monotonic_ns() % 1_000_000}"
    yield mark
    for pid in survivors(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def escape_probe(mark: str) -> str:
    # a sleeper in a session of its own, outside the job's process group
    return f"""
        import subprocess
        print("STARTED", flush=True)
        subprocess.Popen(["setsid", "sleep", "{mark}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        print("SPAWNED", flush=True)
    """


def test_a_process_escaping_with_setsid_dies_with_a_sandboxed_job(
    bwrap: str, workroot: Path, marker: str
) -> None:
    result, log = run(escape_probe(marker), workroot, sandbox=Sandbox(bwrap))
    assert "SPAWNED" in log and result.outcome == "passed", log
    time.sleep(0.2)
    assert survivors(marker) == []


def test_a_process_escaping_with_setsid_dies_with_a_job_that_has_limits(
    workroot: Path, marker: str, missing_service: Missing
) -> None:
    if not offer().pids_cgroup:
        missing_service("cgroup", "no writable cgroup v1 pids hierarchy on this machine")
    result, log = run(escape_probe(marker), workroot, limits={"procs": 50})
    assert "SPAWNED" in log and result.outcome == "passed", log
    time.sleep(0.2)
    assert survivors(marker) == []


def test_a_process_escaping_with_setsid_dies_with_a_plain_job(
    workroot: Path, marker: str, missing_service: Missing
) -> None:
    if tracker() is None:
        missing_service("cgroup", "no writable cgroup v1 pids hierarchy on this machine")
    result, log = run(escape_probe(marker), workroot)
    assert "SPAWNED" in log and result.outcome == "passed", log
    assert survivors(marker) == []  # gone before run() returned
    assert result.resources["strays_killed"] >= 1.0


def test_a_process_escaping_with_setsid_dies_with_a_job_run_as_another_user(
    workroot: Path, marker: str, job_user: tuple[int, int], missing_service: Missing
) -> None:
    # the job's user may not move itself out of the group the worker (root) made
    if tracker() is None:
        missing_service("cgroup", "no writable cgroup v1 pids hierarchy on this machine")
    escape = escape_probe(marker).replace(
        'print("SPAWNED", flush=True)',
        'print("SPAWNED", os.getuid(), flush=True)',
    )
    result, log = run("import os\n" + textwrap.dedent(escape), workroot, user=job_user)
    assert f"SPAWNED {job_user[0]}" in log and result.outcome == "passed", log
    assert survivors(marker) == []
    assert result.reason == "exit 0; killed 1 process it left running"


def test_without_protection_the_setsid_escape_outlives_the_job(
    workroot: Path, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "tracker", lambda: None)  # the process group alone
    result, log = run(escape_probe(marker), workroot)
    assert "SPAWNED" in log and result.outcome == "passed", log
    time.sleep(0.2)
    assert survivors(marker) != []  # the probe does escape: the tests above are not vacuous


FORK_BOMB = """
    import os, time
    print("STARTED", flush=True)
    children = 0
    try:
        for _ in range(200):
            if os.fork() == 0:
                time.sleep(2)
                os._exit(0)
            children += 1
    except OSError as exc:
        print("FORK-FAILED", children, exc.errno, flush=True)
        raise SystemExit(3)
    print("BOMB-DONE", children, flush=True)
"""


def test_a_fork_bomb_is_stopped_by_the_procs_limit(
    workroot: Path, job_user: tuple[int, int]
) -> None:
    # with a pids cgroup the limit holds even for root; without one, RLIMIT_NPROC needs a user
    user = None if offer().pids_cgroup else job_user
    result, log = run(FORK_BOMB, workroot, limits={"procs": 20}, user=user)
    assert "STARTED" in log and "FORK-FAILED" in log and "BOMB-DONE" not in log, log
    assert result.outcome == "failed"
    if offer().pids_cgroup:
        assert result.reason == "exit 3; procs limit 20 reached"
        assert result.resources["procs_peak"] == 20.0
    result, log = run(FORK_BOMB, workroot, user=user)
    assert "BOMB-DONE 200" in log, log


MEMORY_HOG = """
    print("STARTED", flush=True)
    block = bytearray(300 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    print("ALLOCATED", flush=True)
"""


@pytest.mark.parametrize("boxed", [False, True], ids=["plain", "sandboxed"])
def test_a_memory_hog_is_killed_by_the_memory_limit(
    workroot: Path, bwrap: str, boxed: bool
) -> None:
    box = Sandbox(bwrap) if boxed else None
    result, log = run(MEMORY_HOG, workroot, limits={"memory": 64 * 1024**2}, sandbox=box)
    assert "STARTED" in log and "ALLOCATED" not in log, log
    assert result.outcome == "failed"
    if offer().memory_cgroup:
        assert result.reason == "killed: memory limit 64 MiB"
        assert result.resources["cgroup_version"] == 1.0
    result, log = run(MEMORY_HOG, workroot, sandbox=box)
    assert "ALLOCATED" in log and result.outcome == "passed", log


@pytest.mark.parametrize("boxed", [False, True], ids=["plain", "sandboxed"])
def test_a_busy_loop_is_killed_by_the_cpu_limit(workroot: Path, bwrap: str, boxed: bool) -> None:
    box = Sandbox(bwrap) if boxed else None
    started = time.monotonic()
    result, log = run(
        'print("STARTED", flush=True)\nwhile True: pass', workroot, limits={"cpu": 1}, sandbox=box
    )
    assert "STARTED" in log
    assert result.outcome == "failed" and result.reason == "killed: CPU limit 1 s", result
    assert time.monotonic() - started < 10


def test_a_big_file_is_stopped_by_the_file_size_limit(workroot: Path) -> None:
    # Python ignores SIGXFSZ (its write fails with EFBIG instead), so the writer here is head
    command = "echo STARTED; exec head -c 2097152 /dev/zero > big"
    for limits, outcome in (({"fsize": 1024 * 1024}, "failed"), ({}, "passed")):
        out: list[str] = []
        spec = ExecSpec(command=command, workdir_root=str(workroot), limits=limits)
        result = Execution(spec, out_to(out)).run()
        assert "STARTED" in "".join(out)
        assert result.outcome == outcome, result
        if limits:
            assert result.reason == "killed: file size limit 1 MiB"


def test_open_files_are_capped_by_the_nofile_limit(workroot: Path) -> None:
    probe = """
        import os
        fds = []
        try:
            while len(fds) < 500:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            print("CAPPED", len(fds))
    """
    _result, log = run(probe, workroot, limits={"nofile": 64})
    assert "CAPPED" in log and int(log.split()[-1]) < 64, log


def test_jobs_run_as_the_run_as_user_in_their_own_directory(
    job_user: tuple[int, int], workroot: Path, bwrap: str
) -> None:
    probe = 'import os; print(os.getuid(), os.getgid()); open("f", "w").write("ok"); print("OK")'
    for box in (None, Sandbox(bwrap)):
        result, log = run(probe, workroot, user=job_user, sandbox=box)
        assert result.outcome == "passed", log
        assert log.split("\n")[0] == f"{job_user[0]} {job_user[1]}"


SECRET = "tok-9f8e7d6c5b4a"


def test_secrets_are_masked_when_split_across_chunks(workroot: Path) -> None:
    # the secret is written in two pieces with a pause longer than a chunk's interval
    probe = """
        import os, sys, time
        s = os.environ["API_KEY"]
        sys.stdout.write("key=" + s[:5]); sys.stdout.flush()
        time.sleep(0.3)
        sys.stdout.write(s[5:] + " end\\n"); sys.stdout.flush()
        sys.stderr.write("err " + s + "\\n")
    """
    out: list[str] = []
    spec = ExecSpec(
        argv=(PY, "-c", textwrap.dedent(probe)),
        workdir_root=str(workroot),
        env={"API_KEY": SECRET},
        mask=(SECRET,),
        chunk_interval=0.02,
    )
    result = Execution(spec, lambda c: out.append(c.data) if c.stream == "stdout" else None).run()
    assert result.outcome == "passed"
    assert len(out) >= 2  # really more than one chunk on stdout
    log = "".join(out)
    assert SECRET not in log and SECRET[:5] not in log
    assert log == "key=*** end\n"


def test_multi_line_secrets_are_masked(workroot: Path) -> None:
    key = "-----BEGIN-----\nline-one-AAAA\nline-two-BBBB\n-----END-----"
    probe = 'import os; print(os.environ["K"]); print(os.environ["K"].splitlines()[1])'
    result, log = run(probe, workroot, env={"K": key}, mask=(key,))
    assert result.outcome == "passed"
    assert "line-one-AAAA" not in log and "line-two-BBBB" not in log, log
    assert "***" in log


def test_secrets_are_masked_in_the_reason(workroot: Path) -> None:
    # a failure whose message holds the secret: an executable named like it does not exist
    spec = ExecSpec(argv=(f"/nonexistent/{SECRET}",), workdir_root=str(workroot), mask=(SECRET,))
    result = Execution(spec, lambda c: None).run()
    assert result.outcome == "failed" and "could not start" in result.reason
    assert SECRET not in result.reason and "***" in result.reason
    bare = Execution(ExecSpec(argv=(f"/nonexistent/{SECRET}",)), lambda c: None).run()
    assert SECRET in bare.reason  # the message would have shown it


def test_jobs_without_limits_skip_the_wrapper(workroot: Path) -> None:
    result, log = run(f"import os; print(os.getppid() == {os.getpid()})", workroot)
    assert result.outcome == "passed" and log.strip() == "True", log  # started directly
    assert "pid_namespace" not in result.resources
    # followed by a cgroup all the same, where one can be made (worker/tracking.py)
    assert ("cgroup_version" in result.resources) == (tracker() is not None)


def test_the_worker_python_is_usable_by_the_job_user() -> None:
    assert os.access(PY, os.X_OK) and sys.version_info >= (3, 11)
