"""A job never outlives its worker: the watchdog ends the process groups it was told of when
the worker's process dies, however it dies; the executor and the task processes tell it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from process_helpers import gone_within, running

from corral.worker.executor import ExecSpec, Execution
from corral.worker.task_pool import PoolOptions, TaskPool
from corral.worker.tracking import tracker

# A worker in a process of its own: it starts three jobs in sessions of their own, tells the
# watchdog of two and takes one of those back, prints their pids, and is killed outright.
WORKER = textwrap.dedent(
    """
    import os, signal, subprocess, sys
    from corral.worker.watchdog import Watchdog

    dog = Watchdog()
    def job(*argv):
        quiet = subprocess.DEVNULL
        return subprocess.Popen(argv, start_new_session=True, stdout=quiet, stderr=quiet).pid
    watched = job("sleep", "60")
    stubborn = job("sh", "-c", "trap '' TERM; sleep 60")  # SIGTERM is not enough
    forgotten = job("sleep", "60")
    for pid in (watched, stubborn, forgotten):
        dog.watch(pid)
    dog.forget(forgotten)
    print(watched, stubborn, forgotten, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_the_jobs_of_a_worker_killed_outright_are_ended() -> None:
    worker = subprocess.run(
        [sys.executable, "-c", WORKER], capture_output=True, text=True, timeout=30
    )
    assert worker.returncode == -signal.SIGKILL, worker.stderr
    watched, stubborn, forgotten = (int(p) for p in worker.stdout.split())
    try:
        assert gone_within(watched, 2.0), "a watched job outlived its worker"
        assert gone_within(stubborn, 6.0), "a job that ignores SIGTERM outlived its worker"
        assert running(forgotten), "a job taken back from the watchdog was ended"
    finally:
        for pid in (watched, stubborn, forgotten):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


class Told:
    def __init__(self) -> None:
        self.said: list[tuple[str, int]] = []
        self.cgroups: list[str] = []

    def watch(self, pgid: int) -> None:
        self.said.append(("watch", pgid))

    def forget(self, pgid: int) -> None:
        self.said.append(("forget", pgid))

    def watch_cgroup(self, path: str) -> None:
        self.cgroups.append(path)


def test_a_command_job_is_watched_while_it_runs(tmp_path: Path) -> None:
    told = Told()
    execution = Execution(
        ExecSpec(argv=("true",), workdir_root=str(tmp_path), watchdog=told), lambda c: None
    )
    assert execution.run().outcome == "passed"
    assert execution.pid is not None
    assert told.said == [("watch", execution.pid), ("forget", execution.pid)]
    pool = tracker()
    assert told.cgroups == ([] if pool is None else [pool.root])


def test_a_task_process_is_watched_while_it_lives(tmp_path: Path) -> None:
    told = Told()
    pool = TaskPool(lambda sha: b"", PoolOptions(cache_dir=str(tmp_path / "cache"), watchdog=told))
    try:
        proc = pool.take()
        assert told.said == [("watch", proc.popen.pid)]
        proc.close()
        assert told.said == [("watch", proc.popen.pid), ("forget", proc.popen.pid)]
    finally:
        pool.close()


@pytest.mark.parametrize("ended", ["closed", "never started"])
def test_a_worker_that_stops_leaves_no_watchdog_behind(ended: str) -> None:
    from corral.worker.watchdog import Watchdog

    dog = Watchdog()
    if ended == "closed":
        dog.watch(os.getpid() + 10**6)  # starts it; a group that is not there
    proc = dog._proc
    dog.close()
    assert dog._proc is None
    if proc is not None:
        assert proc.returncode == 0
    dog.watch(1)  # after close: nothing is started again
    assert dog._proc is None


def test_a_watchdog_that_cannot_start_never_fails_the_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from corral.worker.watchdog import Watchdog

    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))  # it cannot start
    dog = Watchdog()
    execution = Execution(
        ExecSpec(argv=("true",), workdir_root=str(tmp_path), watchdog=dog), lambda c: None
    )
    assert execution.run().outcome == "passed"
    assert dog._proc is None
    dog.close()
