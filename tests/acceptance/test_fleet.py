"""A coordinator with two `corral worker` processes: DAGs, crashes, drains."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from acceptance_helpers import Cluster, pid_alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


DAG = """\
name = "rev1234"
schedule = "parallel"

[jobs.build]
command = "echo 'build: compiled on' $CORRAL_WORKER; echo 'build: warning W1' >&2"
on = { platform = "linux" }

[jobs.test]
command = "echo 'test: 3 tests'; echo 'test: 1 FAILED' >&2; exit 1"
needs = ["build"]
on = { platform = "linux", role = "b" }

[jobs.deploy]
command = "echo deploying"
needs = ["test"]

[jobs.alert]
command = "echo 'alert: the tests failed'"
needs = ["test"]
when = "failure"
on = { platform = "linux" }

[jobs.tidy]
command = "echo tidy"
needs = ["deploy"]
when = "always"
"""


def test_dag_with_failure_hook_on_two_workers(fleet: Cluster, tmp_path: Path) -> None:
    cluster = fleet
    made = cluster.cli("token", "create", "--worker")
    assert made.code == 0, made
    join = made.out.strip()
    assert join and "\n" not in join, made
    assert "not shown again" in made.err  # the info goes to stderr, the secret alone to stdout
    a = cluster.worker("lin-a", {"platform": "linux"}, join=join, wait=False)
    b = cluster.worker("lin-b", {"platform": "linux", "role": "b"}, join=join, wait=False)
    cluster.await_worker(a)
    cluster.await_worker(b)

    spec = tmp_path / "dag.toml"
    spec.write_text(DAG)
    submitted = cluster.cli("submit", str(spec), "--json", timeout=60)
    assert submitted.code == 1, submitted  # a job failed: non-zero
    final = json.loads(submitted.out)
    assert final["state"] == "failed"
    run_id = final["id"]

    status = cluster.cli("status", str(run_id), "--json")
    assert status.code == 0, status
    jobs = {j["label"]: j for j in json.loads(status.out)["jobs"]}
    assert {k: j["state"] for k, j in jobs.items()} == {
        "build": "passed",
        "test": "failed",
        "deploy": "skipped",  # its need failed
        "alert": "passed",  # when = "failure"
        "tidy": "passed",  # when = "always", after a skipped need
    }
    assert jobs["test"]["worker"] == "lin-b"  # the only worker with role=b
    assert jobs["test"]["exit_code"] == 1
    assert jobs["build"]["worker"] in ("lin-a", "lin-b")
    assert jobs["alert"]["worker"] in ("lin-a", "lin-b")
    assert jobs["deploy"]["worker"] is None and jobs["deploy"]["attempts"] == 0

    logs = cluster.cli("logs", f"{run_id}/build")
    assert logs.code == 0, logs
    assert f"build: compiled on {jobs['build']['worker']}" in logs.out
    assert "warning W1" in logs.err
    assert "warning W1" not in logs.out and "compiled" not in logs.err

    logs = cluster.cli("logs", f"{run_id}/test")
    assert "test: 3 tests" in logs.out and "1 FAILED" in logs.err, logs
    assert "FAILED" not in logs.out

    listing = cluster.cli("status")
    assert listing.code == 0 and "rev1234" in listing.out, listing


def test_sigkilled_worker_job_completes_elsewhere(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start(local_slots=0, lease_ttl="2s")
    pids = tmp_path / "job-pids"
    cluster.procs.pid_files.append(pids)  # a job left running is killed at teardown
    join = cluster.join_token()
    workers = {
        name: cluster.worker(name, {"pool": "crash"}, join=join, wait=False)
        for name in ("crash-a", "crash-b")
    }
    for w in workers.values():
        cluster.await_worker(w)

    spec = tmp_path / "crash.toml"
    spec.write_text(
        'name = "crash"\n'
        "[jobs.slow]\n"
        f'command = "echo $$ >> {pids}; echo started on $CORRAL_WORKER; sleep 5; echo done"\n'
        'on = { pool = "crash" }\n'
        "retries = 1\n"
    )
    submitted = cluster.cli("submit", str(spec), "--detach")
    assert submitted.code == 0, submitted
    run_id = int(submitted.out.strip())

    running = cluster.wait_job(run_id, "slow", ("running",))
    victim = running["worker"]
    follow = cluster.cli_bg("follow", "logs", "-f", f"{run_id}/slow")
    wait_until(lambda: "started on" in follow.stdout(), 10, "`corral logs -f` to show output")
    survivor = next(n for n in workers if n != victim)
    workers[victim].signal(signal.SIGKILL)
    workers[victim].wait(5)
    # its job dies with it (its watchdog), before the survivor runs the job again
    first_pid = int(pids.read_text().split()[0])
    wait_until(lambda: not pid_alive(first_pid), 5, "the job to die with its worker")

    final = cluster.wait_run(run_id, timeout=30)
    assert final["state"] == "passed"
    job = cluster.job(run_id, "slow")
    first, second = job["attempt_list"]
    assert first["worker"] == victim
    assert first["state"] == "expired"
    assert "lease expired" in first["reason"]
    assert second["worker"] == survivor and second["state"] == "passed"
    assert job["worker"] == survivor

    logs = cluster.cli("logs", f"{run_id}/slow")
    assert f"started on {survivor}" in logs.out and "done" in logs.out, logs
    old = cluster.cli("logs", f"{run_id}/slow", "--attempt", "1")
    assert f"started on {victim}" in old.out and "done" not in old.out, old

    status = cluster.cli("status", str(run_id), "--json")
    shown = json.loads(status.out)["jobs"][0]
    assert shown["state"] == "passed" and shown["attempts"] == 2

    # `logs -f` followed the job from the first attempt to the second, and ended with it
    assert follow.wait(10) == 0, follow.tail()
    followed = follow.stdout()
    assert f"started on {victim}" in followed and f"started on {survivor}" in followed
    assert followed.rstrip().endswith("done"), followed
    assert "lease expired" in follow.stderr() and "attempt 2" in follow.stderr()


def test_sigterm_drains_then_exits_zero(fleet: Cluster) -> None:
    cluster = fleet
    drainer = cluster.worker("drainer", {"pool": "drain"}, slots=2)
    first = cluster.submit(
        {
            "name": "long",
            "jobs": {"first": {"command": "sleep 3; echo first done", "on": {"pool": "drain"}}},
        }
    )["id"]
    assert cluster.wait_job(first, "first", ("running",))["worker"] == "drainer"

    drainer.signal(signal.SIGTERM)
    wait_until(lambda: cluster.workers()["drainer"]["state"] == "draining", 10, "drainer draining")
    # a job queued during the drain: the drainer has a free slot, but must not take it
    second = cluster.submit(
        {"name": "later", "jobs": {"second": {"command": "echo second", "on": {"pool": "drain"}}}}
    )["id"]
    while drainer.alive():
        assert cluster.job(second, "second")["state"] == "queued"
        time.sleep(0.2)
        if cluster.job(first, "first")["state"] != "running":
            break
    assert drainer.wait(15) == 0, drainer.tail()
    done = cluster.job(first, "first")
    assert done["state"] == "passed" and done["worker"] == "drainer"
    waiting = cluster.job(second, "second")
    assert waiting["attempts"] == 0 and waiting["state"] == "queued"
    assert "drain" in waiting["waiting"] or "offline" in waiting["waiting"], waiting
    assert "draining" in drainer.stdout()

    shown = cluster.cli("workers", "--json")
    assert shown.code == 0, shown
    states = {w["name"]: w["state"] for w in json.loads(shown.out)}
    assert states["drainer"] in ("draining", "offline")
    table = cluster.cli("workers")
    assert "drainer" in table.out and ("draining" in table.out or "offline" in table.out)

    cluster.worker("fresh", {"pool": "drain"})
    assert cluster.wait_run(second)["state"] == "passed"
    assert cluster.job(second, "second")["worker"] == "fresh"

    # `corral drain` from outside: no new jobs for it until --resume; it keeps running
    drained = cluster.cli("drain", "fresh")
    assert drained.code == 0 and "draining" in drained.out, drained
    third = cluster.submit(
        {"name": "third", "jobs": {"third": {"command": "echo 3", "on": {"pool": "drain"}}}}
    )["id"]
    time.sleep(1.0)
    assert cluster.job(third, "third")["state"] == "queued"
    resumed = cluster.cli("drain", "fresh", "--resume")
    assert resumed.code == 0 and "online" in resumed.out, resumed
    assert cluster.wait_run(third, timeout=10)["state"] == "passed"


def test_second_sigterm_kills_and_releases_at_once(fleet: Cluster, tmp_path: Path) -> None:
    cluster = fleet
    ttl = 10.0
    assert fleet.lease_ttl == "10s"
    pids = tmp_path / "job-pids"
    cluster.procs.pid_files.append(pids)
    join = cluster.join_token()
    doomed = cluster.worker("doomed", {"pool": "force"}, join=join)
    run_id = cluster.submit(
        {
            "name": "forced",
            "jobs": {
                "job": {
                    "command": f"echo $$ >> {pids}; "
                    'if [ "$CORRAL_WORKER" = doomed ]; then sleep 30; fi; '
                    "echo finished on $CORRAL_WORKER",
                    "on": {"pool": "force"},
                }
            },
        }
    )["id"]
    assert cluster.wait_job(run_id, "job", ("running",))["worker"] == "doomed"
    rescuer = cluster.worker("rescuer", {"pool": "force"}, join=join)

    doomed.signal(signal.SIGTERM)
    wait_until(lambda: "draining" in doomed.stdout(), 10, "the first SIGTERM to be handled")
    doomed.signal(signal.SIGTERM)
    forced_at = time.monotonic()
    assert doomed.wait(10) == 0, doomed.tail()

    job = cluster.wait_job(run_id, "job", ("passed", "failed"), timeout=ttl)
    took = time.monotonic() - forced_at
    assert job["state"] == "passed" and job["worker"] == "rescuer", job
    assert took < ttl / 2, f"the job ran elsewhere only after {took:.1f}s (lease TTL {ttl}s)"
    first, second = job["attempt_list"]
    assert first["worker"] == "doomed" and first["state"] == "released", first
    assert second["worker"] == "rescuer" and second["state"] == "passed"

    first_pid = int(pids.read_text().split()[0])
    wait_until(lambda: not pid_alive(first_pid), 5, "the killed job's process to be gone")
    logs = cluster.cli("logs", f"{run_id}/job")
    assert "finished on rescuer" in logs.out, logs
    assert rescuer.alive()
