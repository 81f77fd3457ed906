"""Kept job channels, over a real execnet gateway to a local interpreter (no SSH)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import execnet
import pytest
from process_helpers import running

from corral.fleet import remote, transport
from corral.fleet.inventory import Host
from corral.worker.executor import Chunk


def _connect(site: str, containment: str = "auto") -> transport.Transport:
    t = transport.Transport(Host(site=site, ssh="nobody@nowhere", containment=containment))
    gw = execnet.makegateway("popen//python=python3")
    channel = gw.remote_exec(remote)
    channel.send(("install", transport._shipped(), site, containment))
    channel.receive(30)
    channel.waitclose(30)
    t._gateway = gw  # connected as `gateway()` would have it
    return t


@pytest.fixture
def host() -> Iterator[transport.Transport]:
    yield from _host("auto")


@pytest.fixture
def group_host() -> Iterator[transport.Transport]:
    """A host whose inventory says `containment = "process-group"`."""
    yield from _host("process-group")


def _host(containment: str) -> Iterator[transport.Transport]:
    site = f"here-{uuid.uuid4().hex[:8]}"
    t = _connect(site, containment)
    yield t
    t.close()
    shutil.rmtree(Path(tempfile.gettempdir(), f"corral-worker-site-{site}"), ignore_errors=True)


def _run(t: transport.Transport, command: str) -> tuple[Any, list[str]]:
    out: list[str] = []
    spec = {"command": command, "env": {}, "grace": 0.1}

    def keep(chunk: Chunk) -> None:
        out.append(chunk.data)

    return transport.RemoteExecution(t, spec, keep).run(), out


def test_jobs_on_a_host_take_turns_on_one_kept_channel(host: transport.Transport) -> None:
    first, out1 = _run(host, "echo one")
    assert first.outcome == "passed" and out1 == ["one\n"]
    assert len(host._idle) == 1
    kept = host._idle[0]
    second, out2 = _run(host, "echo two")
    assert second.outcome == "passed" and out2 == ["two\n"]
    assert host._idle == [kept]  # the same channel, back again
    assert kept.gateway is host._gateway


def test_a_late_kill_does_not_stop_the_next_job(host: transport.Transport) -> None:
    import json

    spec = {"command": "true", "env": {}, "grace": 0.1}
    done = transport.RemoteExecution(host, spec, lambda c: None)
    assert done.run().outcome == "passed"
    kept = host._idle[0]
    heard = Heard()
    kept.attach(heard)  # type: ignore[arg-type]
    # the next job is under way when the kill of the one before, which crossed its end on
    # the wire, comes in: it must run on
    number = next(host._numbers)
    kept.channel.send(("run", number, json.dumps({"command": "sleep 0.3; echo fine"})))
    kept.channel.send(("kill", number - 1, "too late"))
    assert heard.done.wait(30)
    assert json.loads(heard.end)["result"]["outcome"] == "passed"
    assert heard.out == ["fine\n"]


class Heard:
    """What a job channel's callback hands to the job running on it."""

    def __init__(self) -> None:
        import threading

        self.out: list[str] = []
        self.end = ""
        self.done = threading.Event()

    def on_output(self, chunk: Chunk) -> None:
        self.out.append(chunk.data)

    def remote_end(self, job_channel: object, text: str) -> None:
        self.end = text
        self.done.set()

    def lost(self, job_channel: object, why: str) -> None:
        self.end = why
        self.done.set()


def test_a_killed_job_ends_and_its_channel_serves_the_next(host: transport.Transport) -> None:
    import threading

    ex = transport.RemoteExecution(host, {"command": "sleep 30", "grace": 0.1}, lambda c: None)
    threading.Timer(0.5, ex.kill, args=("canceled by admin",)).start()
    result = ex.run()
    assert result.outcome == "canceled" and "canceled by admin" in result.reason
    again, out = _run(host, "echo next")
    assert again.outcome == "passed" and out == ["next\n"]


def test_a_dropped_connection_forgets_its_kept_channels(host: transport.Transport) -> None:
    assert _run(host, "true")[0].outcome == "passed"
    assert host._idle
    host.dropped("test")
    assert host._idle == []


def test_a_site_s_jobs_work_in_its_own_directory_cleared_of_a_killed_connection_s(
    tmp_path: Path,
) -> None:
    site = f"unit-{uuid.uuid4().hex[:12]}"
    root = Path(tempfile.gettempdir(), f"corral-worker-site-{site}")
    # what the jobs of a connection whose Python was killed outright left on the host
    left = [root / "attempt-0123456789ab" / "tmp", root / "corral-outputs-x" / "1"]
    for path in left:
        path.mkdir(parents=True)
    first = _connect(site)
    try:
        assert not any(p.exists() for p in left)
        done, out = _run(first, "pwd; echo $CORRAL_OUTPUT")
        assert done.outcome == "passed", done
        workdir, output = (Path(line.strip()) for line in "".join(out).splitlines())
        assert workdir.parent == root and output.parent.parent == root
        # a second live connection of the site takes a directory of its own
        second = _connect(site)
        try:
            done, out = _run(second, "pwd")
            spare = Path("".join(out).strip()).parent
            assert spare != root and spare.name.startswith(f"corral-worker-site-{site}-")
        finally:
            second.close()
        assert not spare.exists()  # a spare directory goes with its connection
    finally:
        first.close()
    assert root.is_dir()  # kept for the site's next connection
    os.remove(root / ".corral-worker.lock")
    root.rmdir()


def test_what_ssh_said_is_its_last_line_and_after_the_connection_only_for_a_drop(
    tmp_path: Path,
) -> None:
    log = tmp_path / "web1.log"
    t = transport.Transport(Host(site="web1", ssh="nobody@web1"), ssh_log=str(log))
    assert t.ssh_said() == ""  # nothing written yet
    assert "-E " + str(log) in transport.ssh_spec(t.host, "", t.ssh_log)
    log.write_text("Warning: Permanently added 'web1' to the list of known hosts.\r\n\n")
    t._said_before = log.stat().st_size  # the connection came up here
    assert t.ssh_said().startswith("Warning: Permanently added")
    assert t.ssh_said(since_up=True) == ""  # how it began says nothing of why it dropped
    with log.open("a") as f:
        f.write("Timeout, server web1 not responding.\r\n")
    assert t.ssh_said(since_up=True) == "Timeout, server web1 not responding."
    log.write_text("x" * 10_000 + "\n")
    assert 400 < len(t.ssh_said()) <= transport.SSH_SAID_MAX
    assert transport.Transport(Host(site="w", ssh="n@w")).ssh_said() == ""  # ssh's stderr


def test_a_host_says_what_ends_its_jobs_processes(host: transport.Transport) -> None:
    from corral.worker.tracking import tracker

    # the local interpreter runs as this test does: it may make cgroups exactly when we may
    pool = tracker()
    expected = f"cgroup v{pool.version}" if pool is not None else "process group"
    assert host.check().containment == expected


def test_what_a_job_left_running_on_a_host_dies_with_it(host: transport.Transport) -> None:
    from corral.worker.tracking import tracker

    if tracker() is None:
        pytest.skip("no writable cgroup v1 pids hierarchy: jobs are followed by their group")
    result, out = _run(host, "setsid sleep 302 </dev/null >/dev/null 2>&1 & echo $!; sleep 0.3")
    pid = int("".join(out).split()[0])
    try:
        assert result.outcome == "passed", result
        assert result.reason == "exit 0; killed 1 process it left running", result
        assert not running(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_host_whose_inventory_keeps_cgroups_out_leaves_a_jobs_daemon_running(
    group_host: transport.Transport,
) -> None:
    from corral.worker.tracking import tracker

    if tracker() is None:
        pytest.skip("no cgroup can be made here: every host's jobs are followed by their group")
    assert group_host.check().containment == "process group"
    result, out = _run(
        group_host, "setsid sleep 303 </dev/null >/dev/null 2>&1 & echo $!; sleep 0.3"
    )
    pid = int("".join(out).split()[0])
    try:
        assert result.outcome == "passed" and result.reason == "exit 0", result
        assert running(pid), "the daemon died with its job"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def v2_host(missing_service: Callable[[str, str], NoReturn]) -> Iterator[transport.Transport]:
    """A host whose inventory says `containment = "cgroup-v2"`."""
    from corral.worker.tracking import own_v2_cgroup

    if own_v2_cgroup() is None:  # the host's Python runs here, as this test does
        missing_service("cgroup", "no cgroup v2 hierarchy this process may create groups in")
    yield from _host("cgroup-v2")


def test_a_host_told_to_use_cgroup_v2_follows_its_jobs_with_it(
    v2_host: transport.Transport,
) -> None:
    assert v2_host.check().containment == "cgroup v2"
    result, out = _run(v2_host, "setsid sleep 304 </dev/null >/dev/null 2>&1 & echo $!; sleep 0.3")
    pid = int("".join(out).split()[0])
    try:
        assert result.reason == "exit 0; killed 1 process it left running", result
        assert result.resources["cgroup_version"] == 2
        assert not running(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
