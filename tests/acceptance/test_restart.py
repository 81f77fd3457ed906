"""`corral serve` killed outright in the middle of a run, then started again on the same home:
every run it accepted is still there; the jobs its local worker was running die with it
(command jobs and task processes alike); and the new process takes over their jobs at once,
each end recorded once, instead of when their leases would have run out."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from acceptance_helpers import CORRAL, Cluster, base_env, pid_alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TASK = """
import os, time
import corral

@corral.task
def nap(pids: str) -> str:
    if os.environ["CORRAL_ATTEMPT"] == "1":
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(60)
    return "rested"
"""
# leases far longer than the test: only the restart can hand their jobs on in time
LEASE_TTL = "120s"


def test_a_server_killed_mid_run_loses_no_run_and_leaves_no_job_running(
    cluster: Cluster, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "nap.py").write_text(TASK)
    serve = ("--tasks", str(tasks))
    cluster.start(local_slots=3, lease_ttl=LEASE_TTL, extra=serve)
    http = cluster.http()

    ended = []
    for i in range(5):
        answer = http.post(
            "/api/v1/runs",
            params={"wait": 30},
            json={"name": f"before-{i}", "jobs": {"j": {"command": f"echo {i}"}}},
        )
        assert answer.status_code == 201 and answer.json()["state"] == "passed", answer.text
        ended.append(answer.json()["id"])

    command_pids, task_pids = tmp_path / "command-pids", tmp_path / "task-pids"
    once_pids = tmp_path / "once-pids"
    first_only = '[ "$CORRAL_ATTEMPT" = 1 ] || exit 0'
    spec = {
        "name": "mid-run",
        "jobs": {
            "command": {
                "command": f"{first_only}; echo $$ >> {command_pids}; sleep 60",
                "retries": 1,
            },
            "task": {"task": "nap", "args": {"pids": str(task_pids)}, "retries": 1},
            # no retry left: lost, saying why
            "once": {"command": f"echo $$ >> {once_pids}; sleep 60"},
            "after": {"command": "echo after", "needs": ["command", "task"]},
        },
    }
    answer = http.post("/api/v1/runs", json=spec)
    assert answer.status_code == 201, answer.text
    run = answer.json()["id"]
    written = (command_pids, task_pids, once_pids)
    wait_until(lambda: all(p.exists() for p in written), 30, "the three jobs running")
    pids = [int(p) for path in written for p in path.read_text().split()]

    work = cluster.home / "work"
    left = [p for p in work.iterdir() if p.name.startswith(("attempt-", "corral-task-"))]
    assert len(left) >= 3  # the three running jobs' directories

    assert cluster.server is not None
    cluster.server.signal(signal.SIGKILL)
    cluster.server.wait(10)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 10, "the jobs to die with the server")

    restarted = time.monotonic()
    cluster.start(local_slots=3, lease_ttl=LEASE_TTL, extra=serve)
    http = cluster.http()
    # what the dead server's jobs left in its working directory is gone
    assert [p for p in left if p.exists()] == []

    def ended_run() -> dict[str, object] | None:
        found = http.get(f"/api/v1/runs/{run}").json()
        return found if found["state"] in ("passed", "failed") else None

    found = wait_until(ended_run, 30, "the run to end after the restart")
    assert time.monotonic() - restarted < 30  # long before its leases would have run out
    jobs = {j["label"]: j for j in found["jobs"]}
    assert found["state"] == "failed"  # `once` was lost with the server
    assert {k: j["state"] for k, j in jobs.items()} == {
        "command": "passed",
        "task": "passed",
        "once": "lost",
        "after": "passed",
    }
    restarted_reason = "stopped before the job ended and has started again"
    assert restarted_reason in jobs["once"]["reason"]
    for label in ("command", "task", "once", "after"):
        attempts = http.get(f"/api/v1/runs/{run}/jobs/{label}").json()["attempt_list"]
        # one end recorded for each attempt; the first of the three that ran was cut short
        assert [a["number"] for a in attempts] == list(range(1, len(attempts) + 1))
        if label in ("command", "task"):
            assert [a["state"] for a in attempts] == ["expired", "passed"]
            assert restarted_reason in attempts[0]["reason"]
    assert http.get(f"/api/v1/runs/{run}/jobs/task").json()["result"] == "rested"

    for run_id in ended:  # accepted and ended before the kill: all there, as they were
        before = http.get(f"/api/v1/runs/{run_id}").json()
        assert before["state"] == "passed"
        assert [j["attempts"] for j in before["jobs"]] == [1]


def test_a_worker_killed_mid_job_takes_its_job_with_it_and_its_restart_takes_over(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start(local_slots=0, lease_ttl=LEASE_TTL)
    worker = cluster.worker("crashy", {"pool": "crashy"})
    pids = tmp_path / "pids"
    http = cluster.http()
    job = {
        "command": f'[ "$CORRAL_ATTEMPT" = 1 ] || exit 0; echo $$ $PWD >> {pids}; sleep 60',
        "on": {"pool": "crashy"},
        "retries": 1,
    }
    answer = http.post("/api/v1/runs", json={"name": "on-a-worker", "jobs": {"j": job}})
    assert answer.status_code == 201, answer.text
    run = answer.json()["id"]
    wait_until(pids.exists, 30, "the job running")
    pid_text, workdir = pids.read_text().split()[:2]
    pid = int(pid_text)
    # in a directory of the worker's own, which its next process clears
    own = cluster.base / "work" / "corral-worker-crashy"
    assert Path(workdir).parent == own
    assert f"working in {own}" in worker.stdout().replace("\n", ""), worker.tail()
    # and says what ends its jobs' processes here, and what enforces their limits
    said = " ".join(worker.stdout().split())
    assert "a job's process" in said and "with it (" in said and "limits: " in said, worker.tail()

    worker.signal(signal.SIGKILL)
    worker.wait(10)
    wait_until(lambda: not pid_alive(pid), 10, "the job to die with its worker")
    assert Path(workdir).is_dir()  # left by the dead process

    cluster.worker("crashy", {"pool": "crashy"})  # the same worker, a new process
    wait_until(lambda: not Path(workdir).exists(), 10, "the dead process's directory removed")

    def passed() -> bool:
        return bool(http.get(f"/api/v1/runs/{run}").json()["state"] == "passed")

    wait_until(passed, 30, "the run to pass on the restarted worker")
    attempts = http.get(f"/api/v1/runs/{run}/jobs/j").json()["attempt_list"]
    assert [a["state"] for a in attempts] == ["expired", "passed"]
    assert "the worker crashy stopped before the job ended" in attempts[0]["reason"]


def test_a_second_worker_of_the_same_name_on_one_machine_is_refused_and_ends_no_job(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Its join would read as the first one's restart, which ends the jobs that one holds."""
    cluster.start(local_slots=0, lease_ttl=LEASE_TTL)
    cluster.worker("twin", {"pool": "twin"})
    started = tmp_path / "started"
    http = cluster.http()
    job = {"command": f"touch {started}; sleep 2; echo done", "on": {"pool": "twin"}}
    answer = http.post("/api/v1/runs", json={"name": "twins", "jobs": {"j": job}})
    assert answer.status_code == 201, answer.text
    run = answer.json()["id"]
    wait_until(started.exists, 30, "the job running")

    second = subprocess.run(
        [
            *CORRAL,
            "worker",
            "--server",
            cluster.url,
            "--token",
            cluster.join_token(),
            "--name",
            "twin",
            "--workdir",
            str(cluster.base / "work"),
        ],
        capture_output=True,
        text=True,
        env=base_env(),
        timeout=60,
    )
    assert second.returncode == 2, second
    assert "a worker named twin is running on this machine already" in second.stderr, second

    def ended() -> bool:
        return http.get(f"/api/v1/runs/{run}").json()["state"] in ("passed", "failed")

    wait_until(ended, 30, "the run to end")
    attempts = http.get(f"/api/v1/runs/{run}/jobs/j").json()["attempt_list"]
    assert [a["state"] for a in attempts] == ["passed"]  # the first worker's, untouched


def test_a_second_server_of_the_same_home_runs_no_local_worker_and_ends_no_job(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Its local worker would have the first one's name, and its join would read as that
    worker's restart."""
    import httpx
    from acceptance_helpers import Proc, free_port

    cluster.start(local_slots=1, lease_ttl=LEASE_TTL)
    started = tmp_path / "started"
    http = cluster.http()
    job = {"command": f"touch {started}; sleep 2; echo done"}
    answer = http.post("/api/v1/runs", json={"name": "one-home", "jobs": {"j": job}})
    assert answer.status_code == 201, answer.text
    run = answer.json()["id"]
    wait_until(started.exists, 30, "the job running")

    port = free_port()
    argv = [*CORRAL, "serve", "--home", str(cluster.home), "--port", str(port)]
    argv += ["--local-slots", "1", "--lease-ttl", LEASE_TTL]
    second = cluster.procs.add(Proc("second", argv, base_env(), cluster.logs, "server"))

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, 30, "the second server")
    wait_until(lambda: "runs none" in second.stderr(), 10, "the second server to say why")
    assert "another corral serve of this home runs a local worker" in second.stderr()

    def ended() -> bool:
        return http.get(f"/api/v1/runs/{run}").json()["state"] in ("passed", "failed")

    wait_until(ended, 30, "the run to end")
    attempts = http.get(f"/api/v1/runs/{run}/jobs/j").json()["attempt_list"]
    assert [a["state"] for a in attempts] == ["passed"]  # the first server's worker's, untouched
