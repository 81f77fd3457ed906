"""Jobs followed by a cgroup (worker/tracking.py): what a job leaves running dies with it, with
its worker, or when a dead worker's successor starts. Real cgroups, where this machine lets us
make them (root with a cgroup v1 pids hierarchy); otherwise these are skipped, or fail where CI
requires the services."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from process_helpers import gone_within, running

from corral.worker import tracking
from corral.worker.limits import kill_members, members, offer
from corral.worker.tracking import Tracker, own_v2_cgroup, sweep

Missing = Callable[[str, str], NoReturn]


@pytest.fixture
def parent(missing_service: Missing) -> str:
    found = offer().pids_cgroup
    if found is None or tracking.tracker() is None:
        missing_service("cgroup", "no writable cgroup v1 pids hierarchy on this machine")
    assert found is not None
    return found


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def sleep_in(group: str, started: list[subprocess.Popen[bytes]]) -> int:
    """A process of ours moved into `group`, as a job's stray would be in it. Ours: killed, it
    is reaped by us, not left a zombie for an init that may never reap it."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    started.append(proc)
    Path(group, "cgroup.procs").write_text(str(proc.pid))
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc.pid


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_group_is_used_again_once_its_job_has_ended(parent: str, sleepers: list) -> None:
    pool = tracking.tracker()
    assert pool is not None
    track = pool.take()
    stray = sleep_in(track.path, sleepers)
    pool.give_back(track)  # what the job left is killed, and the group kept
    assert gone_within(stray, 2.0)
    assert track.killed == 1
    again = pool.take()
    assert again is track and again.killed == 0
    with again.spawning():
        proc = subprocess.Popen(["true"])
    proc.wait()
    assert members(track.path) == []
    pool.give_back(again)


def test_a_group_that_keeps_counting_zombies_is_replaced(parent: str) -> None:
    pool = tracking.tracker()
    assert pool is not None
    track = pool.take()
    with track.spawning():
        # an orphan, adopted by an init that may not reap it; or by a subreaper that does
        subprocess.run(["sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 &"], check=True)
    pool.give_back(track)
    assert track.killed == 1
    again = pool.take()
    try:
        assert again.killed == 0
        if again is not track:  # the zombie still counted: a fresh group
            assert again.path != track.path and not os.path.exists(track.path)
    finally:
        pool.give_back(again)


def test_the_spawning_thread_is_back_in_its_own_group_after_the_spawn(parent: str) -> None:
    pool = tracking.tracker()
    assert pool is not None
    track = pool.take()
    try:
        with track.spawning():
            proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        tid = str(threading.get_native_id())
        assert Path(track.path, "tasks").read_text().split() == [str(proc.pid)]
        assert tid in Path(parent, "tasks").read_text().split()
    finally:
        pool.give_back(track)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_killing_a_group_never_kills_the_worker_itself(parent: str) -> None:
    group = os.path.join(parent, f"corral-{os.getpid()}-selftest")
    os.mkdir(group)
    tid = str(threading.get_native_id())
    try:
        Path(group, "tasks").write_text(tid)  # a thread of ours left inside by mistake
        assert members(group) == [os.getpid()]
        assert kill_members(group) == 0
    finally:
        Path(parent, "tasks").write_text(tid)
        os.rmdir(group)


def test_a_dead_workers_groups_are_swept_with_what_is_in_them(parent: str, sleepers: list) -> None:
    gone = os.path.join(parent, f"corral-{dead_pid()}-jobs")
    os.makedirs(os.path.join(gone, "1"))
    stray = sleep_in(os.path.join(gone, "1"), sleepers)
    live = os.path.join(parent, f"corral-{os.getpid()}-other")  # a live process's: kept
    os.mkdir(live)
    try:
        sweep(parent)
        assert gone_within(stray, 2.0)
        assert not os.path.exists(gone)
        assert os.path.isdir(live)
    finally:
        os.rmdir(live)


def test_a_pool_made_where_a_dead_process_of_our_pid_left_one_starts_empty(
    parent: str, sleepers: list
) -> None:
    # the sweep takes a pool named with our own pid for ours, alive: one a dead process of the
    # same pid left is cleared when the pool is made (a nest of ours stands for the hierarchy)
    nest = os.path.join(parent, f"corral-{os.getpid()}-nest")
    left = os.path.join(nest, f"corral-{os.getpid()}-jobs", "1")
    os.makedirs(left)
    stray = sleep_in(left, sleepers)
    pool = Tracker(nest)
    try:
        assert gone_within(stray, 2.0)
        assert os.listdir(pool.root) and "1" not in os.listdir(pool.root)
    finally:
        pool.release()
        os.rmdir(nest)


# A worker in a process of its own, on the cgroup version its operator chose: a job starts a
# sleeper in a session of its own and goes on running; the worker prints both pids and what it
# says of its jobs' processes, and is killed outright. Its watchdog must end the job (by its
# group) and the stray (by the cgroup).
WORKER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from corral.worker import tracking
    from corral.worker.executor import ExecSpec, Execution
    from corral.worker.watchdog import Watchdog

    said = tracking.describe()
    dog = Watchdog()
    script = "setsid sleep 61 </dev/null >/dev/null 2>&1 & echo $!; exec sleep 60"
    lines = []
    execution = Execution(ExecSpec(command=script, watchdog=dog), lambda c: lines.append(c.data))
    threading.Thread(target=execution.run, daemon=True).start()
    while not lines:
        time.sleep(0.01)
    print(execution.pid, lines[0].strip(), flush=True)
    print(said, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)
KINDS = {1: "a cgroup v1 pids group", 2: "a cgroup v2 threaded group"}


@pytest.mark.parametrize("version", [1, 2])
def test_what_a_job_left_running_dies_with_a_worker_killed_outright(
    version: int, missing_service: Missing
) -> None:
    parent = offer().pids_cgroup if version == 1 else own_v2_cgroup()
    if parent is None:
        missing_service("cgroup", f"no cgroup v{version} hierarchy to make groups in here")
    assert parent is not None
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, CORRAL_CONTAINMENT=f"cgroup-v{version}"),
    )
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL, err
    pids, said = out.splitlines()
    assert said == f"a job's processes end with it (its process group, and {KINDS[version]})"
    job, stray = (int(p) for p in pids.split())
    try:
        assert gone_within(job, 2.0), "the job outlived its worker"
        assert gone_within(stray, 2.0), "what the job left its group with outlived its worker"
    finally:
        for pid in (job, stray):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # the next worker on the machine removes the dead one's groups
    assert [n for n in os.listdir(parent) if n.startswith(f"corral-{worker.pid}-")]
    sweep(parent)
    assert not [n for n in os.listdir(parent) if n.startswith(f"corral-{worker.pid}-")]


def test_a_stopping_worker_releases_the_groups_no_job_is_in(parent: str, sleepers: list) -> None:
    nest = os.path.join(parent, f"corral-{os.getpid()}-nest")
    os.mkdir(nest)
    pool = Tracker(nest)
    try:
        busy, idle = pool.take(), pool.take()
        pool.give_back(idle)
        stray = sleep_in(busy.path, sleepers)  # another worker's job, running on
        pool.release()
        assert os.path.isdir(busy.path) and not os.path.exists(idle.path)
        assert running(stray)
        pool.give_back(busy)
        pool.release()
        assert not os.path.exists(pool.root)
        again = pool.take()  # a job after all: the pool is made again
        assert os.path.isdir(again.path)
        pool.give_back(again)
    finally:
        pool.release()
        os.rmdir(nest)


def test_a_worker_that_stops_leaves_the_other_workers_jobs_running(
    parent: str, sleepers: list
) -> None:
    from corral.worker.watchdog import Watchdog

    pool = tracking.tracker()
    assert pool is not None
    track = pool.take()
    try:
        stray = sleep_in(track.path, sleepers)  # a job of another worker in this process
        stopping = Watchdog()
        stopping.watch_cgroup(pool.root)
        stopping.watch(10**6 + os.getpid())  # starts it
        stopping.close()
        assert running(stray)
    finally:
        pool.give_back(track)
