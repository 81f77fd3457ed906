"""Jobs followed by a cgroup v2 group (worker/tracking.py), where a worker has no cgroup v1 pids
hierarchy: the worker's process moves into its pool's directory and its threads into the
pool's threaded groups for each spawn. Real cgroups, on the cgroup v2 hierarchy this machine
mounts (beside its v1 hierarchies, which `auto` prefers); skipped without one, or failing
where CI requires the services."""

from __future__ import annotations

import contextlib
import json
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
from process_helpers import gone_within

from corral.worker import tracking
from corral.worker.limits import kill_members, members
from corral.worker.tracking import Tracker, own_v2_cgroup

Missing = Callable[[str, str], NoReturn]
ESCAPE = "setsid sleep 61 </dev/null >/dev/null 2>&1 & echo $!; sleep 0.3"


@pytest.fixture
def parent(missing_service: Missing) -> str:
    found = own_v2_cgroup()
    if found is None:
        missing_service("cgroup", "no cgroup v2 hierarchy this process may create groups in")
    assert found is not None
    return found


@pytest.fixture
def pool(parent: str) -> Iterator[Tracker]:
    made = Tracker(parent, 2)
    try:
        yield made
    finally:
        made.release()
        assert _own_group() == parent, "the test process did not move back out of the pool"


def _own_group() -> str:
    mount = own_v2_cgroup()
    assert mount is not None
    return mount


def _v2_path(pid: int | str) -> str:
    text = Path(f"/proc/{pid}/cgroup").read_text()
    return next(line[3:] for line in text.splitlines() if line.startswith("0::"))


def _escape_in(track: tracking.Track) -> int:
    """A job that leaves a process running in a session of its own, started in `track`."""
    with track.spawning():
        job = subprocess.Popen(["sh", "-c", ESCAPE], stdout=subprocess.PIPE, text=True)
    out, _ = job.communicate(timeout=10)
    return int(out)


def test_a_process_that_left_its_job_is_in_the_group_and_dies_with_the_job(pool: Tracker) -> None:
    track = pool.take()
    stray = _escape_in(track)
    try:
        assert _v2_path(stray).endswith(f"/corral-{os.getpid()}-jobs/1"), _v2_path(stray)
        assert Path(track.path, "cgroup.type").read_text().strip() == "threaded"
        pool.give_back(track)
        assert gone_within(stray, 2.0)
        assert track.killed == 1
        # killed, the stray is a zombie this machine's init may never reap: v2 does not count
        # it, so the group is used again (v1 must replace it)
        again = pool.take()
        assert again is track and again.killed == 0
        pool.give_back(again)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stray, signal.SIGKILL)


def test_the_spawning_thread_is_back_in_the_pools_directory_after_the_spawn(
    pool: Tracker,
) -> None:
    track = pool.take()
    try:
        with track.spawning():
            proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        tid = str(threading.get_native_id())
        assert Path(track.path, "cgroup.threads").read_text().split() == [str(proc.pid)]
        assert tid in Path(pool.root, "cgroup.threads").read_text().split()
        assert members(track.path) == [proc.pid]
    finally:
        pool.give_back(track)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_killing_a_group_never_kills_the_worker_itself(pool: Tracker) -> None:
    track = pool.take()
    tid = str(threading.get_native_id())
    try:
        Path(track.path, "cgroup.threads").write_text(tid)  # a thread of ours left inside
        assert members(track.path) == [os.getpid()]  # its process, not the thread
        assert kill_members(track.path) == 0
    finally:
        Path(pool.root, "cgroup.threads").write_text(tid)
        pool.give_back(track)


def test_the_pool_is_left_when_released_and_entered_again_for_a_later_job(
    pool: Tracker, parent: str
) -> None:
    assert _own_group() == pool.root
    track = pool.take()
    pool.give_back(track)
    pool.release()
    assert _own_group() == parent and not os.path.exists(pool.root)
    again = pool.take()  # a job after all
    assert _own_group() == pool.root
    stray = _escape_in(again)
    pool.give_back(again)
    assert gone_within(stray, 2.0) and again.killed == 1


def test_a_busy_pool_is_not_left(pool: Tracker, parent: str) -> None:
    busy = pool.take()  # another worker of this process runs a job in it
    pool.release()
    assert _own_group() == pool.root and os.path.isdir(busy.path)
    pool.give_back(busy)


def _env(containment: str) -> dict[str, str]:
    return dict(os.environ, CORRAL_CONTAINMENT=containment)


# A job run to its end by the executor in a process of its own, with the cgroup chosen by name.
JOB = textwrap.dedent(
    """
    import json
    from corral.worker import tracking
    from corral.worker.executor import ExecSpec, Execution

    # the pause: setsid must have run before the job ends, or its process group takes it
    script = "setsid sleep 62 </dev/null >/dev/null 2>&1 & echo $!; sleep 0.3"
    lines = []
    result = Execution(ExecSpec(command=script), lambda c: lines.append(c.data)).run()
    print(json.dumps({
        "stray": int(lines[0]), "reason": result.reason, "resources": dict(result.resources),
        "said": tracking.describe(),
    }))
    """
)


def _job(containment: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", JOB],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(containment),
        check=True,
    )
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_a_job_on_cgroup_v2_says_what_it_left_running_and_that_it_was_killed(parent: str) -> None:
    found = _job("cgroup-v2")
    stray = found["stray"]
    assert isinstance(stray, int)
    try:
        assert gone_within(stray, 2.0), "the daemon outlived its job"
        assert found["reason"] == "exit 0; killed 1 process it left running"
        resources = found["resources"]
        assert isinstance(resources, dict)
        assert resources["cgroup_version"] == 2 and resources["strays_killed"] == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stray, signal.SIGKILL)


def test_with_the_process_group_alone_the_daemon_outlives_its_job(parent: str) -> None:
    # what the operator chooses for jobs that must leave a daemon running; and the proof that
    # the test above would see a daemon that outlived its job
    found = _job("process-group")
    stray = found["stray"]
    assert isinstance(stray, int)
    try:
        assert not gone_within(stray, 0.5), "the daemon died with its job"
        assert found["reason"] == "exit 0"
        resources = found["resources"]
        assert isinstance(resources, dict) and "cgroup_version" not in resources
        assert found["said"] == (
            "a job's process group ends with it (CORRAL_CONTAINMENT=process-group: a process "
            "that leaves the group outlives the job)"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stray, signal.SIGKILL)


def test_an_unknown_choice_is_said_and_taken_for_auto(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CORRAL_CONTAINMENT", "cgroups")
    assert tracking.containment() == "auto"
    assert "CORRAL_CONTAINMENT=cgroups is none of auto, cgroup-v1, cgroup-v2, process-group" in (
        caplog.text
    )


def test_a_worker_that_a_job_started_runs_without_a_cgroup_and_leaves_none(pool: Tracker) -> None:
    # its own cgroup is the job's threaded group, under which no pool can be made
    track = pool.take()
    try:
        with track.spawning():
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from corral.worker import tracking\nprint(tracking.describe())",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                env=_env("cgroup-v2"),
            )
        assert done.stdout.startswith("a job's process group ends with it (no cgroup"), done
        assert "jobs' processes not followed by a cgroup v2" in done.stderr, done
        assert not [n for n in os.listdir(track.path) if n.startswith("corral-")]
    finally:
        pool.give_back(track)
