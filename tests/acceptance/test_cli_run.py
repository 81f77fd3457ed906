"""`corral run`, `cancel` and `rerun` against a real `corral serve` with its local worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest
from acceptance_helpers import Cluster, pid_alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def test_run_passes_exit_code_and_streams(shared: Cluster) -> None:
    began = time.monotonic()
    failing, passing, retried, timed_out = shared.cli_many(
        ("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"),
        ("run", "--", "true"),
        # a retried job: the output of every attempt is shown, and why it was retried
        ("run", "--retries", "1", "--", "sh", "-c", 'echo "try $CORRAL_ATTEMPT"; exit 4'),
        ("run", "--name", "sleeper", "--timeout", "1s", "--", "sleep", "30"),
    )
    assert failing.code == 3, failing
    assert failing.out.splitlines()[0] == "out", failing
    assert "err" not in failing.out
    assert "err" in failing.err.splitlines()
    assert "out" not in failing.err.splitlines()

    assert passing.code == 0 and passing.out == "", passing

    assert retried.code == 4, retried
    assert retried.out.split() == ["try", "1", "try", "2"], retried
    assert "exit 4" in retried.err and "attempt 2" in retried.err, retried

    assert timed_out.code != 0, timed_out
    assert time.monotonic() - began < 20
    assert "timed out" in timed_out.err, timed_out
    run = shared.runs_named("sleeper")[0]
    job = shared.job(run["id"], "job")
    assert job["state"] == "timed_out" and "timed out after 1s" in job["reason"], job


def test_what_a_job_leaves_running_dies_with_it_and_its_reason_says_so(
    shared: Cluster, tmp_path: Path, missing_service: Callable[[str, str], NoReturn]
) -> None:
    from corral.worker.tracking import tracker

    if tracker() is None:  # the server runs here, as this test does
        missing_service("cgroup", "no writable cgroup v1 pids hierarchy on this machine")
    pidfile = tmp_path / "daemon.pid"
    daemon = f"setsid sleep 301 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}; sleep 0.3"
    done = shared.cli("run", "--name", "daemonizer", "--", "sh", "-c", daemon)
    assert done.code == 0, done
    pid = int(pidfile.read_text())
    assert not pid_alive(pid), "the process the job left running outlived it"
    job = shared.job(shared.runs_named("daemonizer")[0]["id"], "job")
    assert job["reason"] == "exit 0; killed 1 process it left running", job


@pytest.mark.parametrize("containment", ["cgroup-v2", "process-group"])
def test_a_worker_ends_what_its_jobs_leave_as_its_operator_chose(
    shared: Cluster,
    tmp_path: Path,
    missing_service: Callable[[str, str], NoReturn],
    containment: str,
) -> None:
    from corral.worker.tracking import own_v2_cgroup

    if own_v2_cgroup() is None:  # the worker runs here, as this test does
        missing_service("cgroup", "no cgroup v2 hierarchy this process may create groups in")
    name = f"contain-{containment}"
    worker = shared.worker(name, {"contain": containment}, env={"CORRAL_CONTAINMENT": containment})
    pidfile = tmp_path / "daemon.pid"
    shared.procs.pid_files.append(pidfile)  # the daemon a process group alone leaves is killed
    daemon = f"setsid sleep 302 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}; sleep 0.3"
    done = shared.cli(
        "run", "--on", f"contain={containment}", "--name", name, "--", "sh", "-c", daemon
    )
    assert done.code == 0, done
    pid = int(pidfile.read_text())
    job = shared.job(shared.runs_named(name)[0]["id"], "job")
    said = worker.stdout()
    if containment == "cgroup-v2":
        assert not pid_alive(pid), "the process the job left running outlived it"
        assert job["reason"] == "exit 0; killed 1 process it left running", job
        assert "a job's processes end with it (its process group, and a cgroup v2" in said, said
    else:  # and the first case could see a daemon that outlived its job
        assert pid_alive(pid), "the daemon died with its job"
        assert job["reason"] == "exit 0", job
        assert "CORRAL_CONTAINMENT=process-group: a process that leaves the group" in said, said


def test_cancel_stops_the_process(shared: Cluster, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    pids = tmp_path / "pids"
    shared.procs.pid_files.append(pids)
    started = shared.cli(
        "run",
        "--detach",
        "--name",
        "to-cancel",
        "--",
        f"echo $$ > {pids}; sleep 4; touch {marker}",
    )
    assert started.code == 0, started
    run_id = int(started.out.strip())
    shared.wait_job(run_id, "job", ("running",))
    began = time.monotonic()

    canceled = shared.cli("cancel", str(run_id))
    assert canceled.code == 0, canceled
    assert "canceled" in canceled.out

    pid = int(wait_until(lambda: pids.exists() and pids.read_text().strip(), 5, "the job's pid"))
    wait_until(lambda: not pid_alive(pid), 5, "the canceled job's process to stop")
    status = shared.cli("status", str(run_id), "--json")
    shown = json.loads(status.out)
    assert shown["state"] == "canceled"
    assert shown["jobs"][0]["state"] == "canceled"
    assert "canceled by" in shown["jobs"][0]["reason"]
    # past the moment the job would have written its marker
    time.sleep(max(0.0, 4.5 - (time.monotonic() - began)))
    assert not marker.exists()
    # the local worker's slot is free again: a new job runs at once
    assert shared.cli("run", "--", "true").code == 0


RERUN = """\
name = "flaky"

[jobs.prepare]
command = "echo prepared"

[jobs.check]
command = "if [ -f {mark} ]; then echo fixed; else touch {mark}; echo broken >&2; exit 1; fi"
needs = ["prepare"]

[jobs.publish]
command = "echo published"
needs = ["check"]

[jobs.docs]
command = "echo docs"
"""


def test_rerun_failed_reruns_only_failed_and_downstream(shared: Cluster, tmp_path: Path) -> None:
    spec = tmp_path / "flaky.toml"
    spec.write_text(RERUN.format(mark=tmp_path / "fixed"))
    first = shared.cli("submit", str(spec), "--json", timeout=60)
    assert first.code == 1, first
    run = json.loads(first.out)
    run_id = run["id"]
    before = {j["label"]: j for j in run["jobs"]}
    assert {k: j["state"] for k, j in before.items()} == {
        "prepare": "passed",
        "check": "failed",
        "publish": "skipped",
        "docs": "passed",
    }

    again = shared.cli("rerun", str(run_id), "--failed")
    assert again.code == 0, again
    final = shared.wait_run(run_id)
    assert final["state"] == "passed"
    after = shared.jobs(run_id)
    assert {k: j["state"] for k, j in after.items()} == dict.fromkeys(after, "passed")
    for untouched in ("prepare", "docs"):  # passed the first time: not run again
        assert after[untouched]["ended_at"] == before[untouched]["ended_at"]
        assert len(shared.job(run_id, untouched)["attempt_list"]) == 1
    assert len(shared.job(run_id, "check")["attempt_list"]) == 2
    assert len(shared.job(run_id, "publish")["attempt_list"]) == 1
    assert "fixed" in shared.cli("logs", f"{run_id}/check").out

    refused = shared.cli("rerun", str(run_id), "--failed")
    assert refused.code == 2 and "no failed jobs" in refused.err, refused
