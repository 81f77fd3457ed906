"""sudo's password for a job: a `sudo` first in PATH adds -A, its helper asks the executor over a
socket that answers the job's own session only, and the password reaches no output."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from corral.worker.askpass import SudoAskpass
from corral.worker.executor import Chunk, ExecSpec, Execution

PASSWORD = "s3cret-sudo-pw"

# Stands in for sudo in these fast tests (tests/acceptance/test_fleet_sudo.py uses the real
# one): it insists on -A and asks the helper the way sudo does, prompt as the argument.
FAKE_SUDO = """#!/bin/sh
[ "$1" = -A ] || { echo "no -A: $*" >&2; exit 9; }
shift
pw=$("$SUDO_ASKPASS" "[sudo] password for you: ") || { echo "askpass failed" >&2; exit 8; }
echo "askpass said: $pw"
"$@"
"""


def fake_sudo(tmp_path: Path) -> str:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "sudo"
    script.write_text(FAKE_SUDO)
    script.chmod(0o755)
    return f"{folder}:{os.environ.get('PATH', '/usr/bin:/bin')}"


def run(
    command: str,
    path: str,
    mask: tuple[str, ...] = (PASSWORD,),
    user: tuple[int, int] | None = None,
) -> tuple[str, str, int | None, str]:
    chunks: list[Chunk] = []
    spec = ExecSpec(
        command=command, env={"PATH": path}, sudo_password=PASSWORD, mask=mask, user=user
    )
    result = Execution(spec, chunks.append).run()
    out = "".join(c.data for c in chunks if c.stream == "stdout")
    err = "".join(c.data for c in chunks if c.stream == "stderr")
    return out, err, result.exit_code, result.reason


def test_the_jobs_sudo_gets_the_password_from_the_helper_and_it_is_masked(
    tmp_path: Path,
) -> None:
    out, err, code, _ = run(
        'sudo echo ran; sudo sh -c "echo again"; echo "askpass=$SUDO_ASKPASS"', fake_sudo(tmp_path)
    )
    assert code == 0, err
    lines = out.splitlines()
    # asked twice, answered twice (a pipe would have been empty the second time)
    assert lines[0] == "askpass said: ***" and lines[2] == "askpass said: ***", out
    assert lines[1] == "ran" and lines[3] == "again"
    assert PASSWORD not in out + err
    folder = Path(lines[4].removeprefix("askpass=")).parent
    assert folder.name.startswith("corral-sudo-")
    assert not folder.exists()  # removed with the job


def test_the_password_is_not_in_the_jobs_environment(tmp_path: Path) -> None:
    out, err, code, _ = run(
        f"{sys.executable} -c 'import os, sys; sys.stdout.write(repr(dict(os.environ)))'",
        fake_sudo(tmp_path),
        mask=(),
    )
    assert code == 0, err
    assert PASSWORD not in out and "SUDO_ASKPASS" in out


def test_the_helper_answers_nobody_outside_the_jobs_session(tmp_path: Path) -> None:
    asked = SudoAskpass(PASSWORD)
    env = {"PATH": fake_sudo(tmp_path)}
    asked.start(env)
    try:
        job = subprocess.Popen(["sleep", "30"], start_new_session=True)
        asked.bind(job.pid)
        sock_path = Path(env["SUDO_ASKPASS"]).parent / "socket"
        assert oct(Path(env["SUDO_ASKPASS"]).parent.stat().st_mode & 0o777) == "0o700"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(sock_path))  # this test is not in the job's session
            s.settimeout(10)
            assert s.recv(4096) == b""
        # the helper itself, run from outside: nothing to print, and it says so by its exit
        helper = subprocess.run([env["SUDO_ASKPASS"], "prompt"], capture_output=True)
        assert helper.returncode == 1 and helper.stdout == b""
        job.kill()
        job.wait()
    finally:
        asked.close()
    assert not sock_path.parent.exists()


def test_without_sudo_on_the_host_the_job_fails_as_it_would_without_corral(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _out, err, code, _ = run("sudo true", f"{empty}:/nonexistent")
    assert code == 127 and "sudo" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the job as another user: needs root")
def test_a_job_run_as_another_user_reaches_its_helper() -> None:
    # not under pytest's folder: the other user may not enter root's 0700 folders
    base = Path(tempfile.mkdtemp(prefix="corral-askpass-test-"))
    try:
        base.chmod(0o755)
        path = fake_sudo(base)
        (base / "bin").chmod(0o755)
        out, err, code, _ = run("sudo id -u", path, user=(65534, 65534))
    finally:
        shutil.rmtree(base)
    assert code == 0, err
    assert out.splitlines() == ["askpass said: ***", "65534"]
