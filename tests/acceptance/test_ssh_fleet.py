"""The fleet over SSH through the CLI: real sshd hosts, `corral hosts`, `corral exec`, drops."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acceptance_helpers import CORRAL, Cluster, Procs, base_env, pid_alive, wait_until
from fleet_sshd import USER, SshFleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROLES = {
    "web1": ["app", "primary"],
    "web2": ["app"],
    "web3": ["app"],
    "web4": ["app"],
    "web5": ["db"],
    "web6": ["db"],
    "web7": ["batch"],
    "web8": ["batch"],
    "web9": ["edge"],
    "web10": ["edge"],
}


@pytest.fixture(scope="module")
def _ssh_server(tmp_path_factory: pytest.TempPathFactory, ssh_fleet: SshFleet) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("sshserver")
    config = base / "corral.toml"
    config.write_text(ssh_fleet.toml(ROLES, '[roles.app]\nvars = { TIER = "front" }'))
    keeper = Procs()
    try:
        yield Cluster(keeper, base, "ssh-server").start(
            local_slots=0, lease_ttl="5s", extra=("--config", str(config))
        )
    finally:
        keeper.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the hosts' user may write (pytest's own temp folders are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="corral-fleet-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server(_ssh_server: Cluster, procs: Procs, tmp_path: Path) -> Cluster:
    return _ssh_server.borrow(procs, tmp_path)


def test_hosts_lists_the_inventory_and_check_connects_to_each(server: Cluster) -> None:
    listed = server.cli("hosts")
    assert listed.code == 0, listed
    for site, roles in ROLES.items():
        assert re.search(
            rf"^{site}\s+{USER}@127\.0\.0\.1:\d+\s+{','.join(roles)}\s", listed.out, re.M
        )
    checked = server.cli("hosts", "check", timeout=60)
    assert checked.code == 0, checked
    rows = [line for line in checked.out.splitlines() if line.startswith("web")]
    assert len(rows) == 10
    for row in rows:
        assert re.search(r"\sconnected\s+3\.\d+\.\d+\s+\d+ ms", row), row
    answer = server.http().get("/api/v1/hosts").json()["hosts"]
    assert {h["reachability"] for h in answer} == {"connected"}
    assert all(h["python"].startswith("3.") for h in answer)
    # the hosts log in as a plain user, who may make no cgroups: a job's group is what ends
    assert {h["containment"] for h in answer} == {"process group"}
    assert all(row.rstrip().endswith("process group") for row in rows), rows


def test_exec_on_a_role_prefixes_lines_by_host_and_sums_up(server: Cluster) -> None:
    result = server.cli(
        "exec",
        "--on",
        "role=app",
        "--",
        'echo "hello from $CORRAL_SITE tier=$TIER"; printf "no newline from %s" "$CORRAL_SITE"; '
        'echo "to stderr" >&2; [ "$CORRAL_SITE" != web3 ]',
        timeout=60,
    )
    assert result.code == 1, result  # web3 failed
    for site in ("web1", "web2", "web3", "web4"):
        assert re.search(rf"^{site} \| hello from {site} tier=front$", result.out, re.M), result
        assert re.search(rf"^{site} \| no newline from {site}$", result.out, re.M), result
        assert re.search(rf"^{site} \| to stderr$", result.err, re.M), result
    assert "web5" not in result.out  # a db host
    summary = result.out[result.out.index("HOST") :]
    assert re.search(r"^web3\s+failed\s+1\s", summary, re.M), summary
    for site in ("web1", "web2", "web4"):
        assert re.search(rf"^{site}\s+passed\s+0\s", summary, re.M), summary
    run_id = re.search(r"run (\d+)", result.err)
    assert run_id, result
    status = server.cli("status", run_id.group(1))
    assert status.code == 0, status
    assert re.search(r"^exec\s+failed\s+web3\s", status.out, re.M), status


def test_exec_sequential_runs_hosts_in_the_order_given(server: Cluster) -> None:
    result = server.cli(
        "exec", "--hosts", "web6,web5", "--sequential", "--", "sleep 0.3; echo done", timeout=60
    )
    assert result.code == 0, result
    run_id = re.search(r"run (\d+)", result.err)
    assert run_id, result
    jobs = {
        j["name"]: j for j in server.http().get(f"/api/v1/runs/{run_id.group(1)}").json()["jobs"]
    }
    assert jobs["web5"]["started_at"] >= jobs["web6"]["ended_at"]
    assert jobs["web6"]["worker"] == "web6" and jobs["web5"]["worker"] == "web5"


def test_a_dropped_connection_kills_the_remote_job_and_the_host_comes_back(
    server: Cluster, ssh_fleet: SshFleet, shared_dir: Path
) -> None:
    pid_file = shared_dir / "pid"
    running = server.cli_bg(
        "exec-drop",
        "exec",
        "--on",
        "role=edge",
        "--",
        f'if [ "$CORRAL_SITE" = web9 ]; then echo $$ > {pid_file}; echo started; sleep 60; '
        "else sleep 1; echo fine; fi",
    )
    pid = int(
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "web9's job")
    )
    assert pid_alive(pid)
    ssh_fleet.kill("web9")
    try:
        code = running.wait(60)
        assert code == 1, running.tail()
        out = running.stdout()
        assert re.search(r"^web10\s+passed\s+0\s", out, re.M), out
        assert re.search(
            r"^web9\s+failed\s+-\s.*lost the SSH connection to web9 mid-job", out, re.M
        ), out
        assert "web10 | fine" in out
        # the job's process on the host died with its channel
        wait_until(lambda: not pid_alive(pid), 15, f"web9's job (pid {pid}) to be killed")
        hosts = {h["site"]: h for h in server.http().get("/api/v1/hosts").json()["hosts"]}
        assert hosts["web9"]["reachability"] == "unreachable"
        assert "web9" in hosts["web9"]["error"]
        # trying again while its sshd is down: the reason is ssh's own, not "see the log"
        checked = server.cli("hosts", "check", "--json", timeout=60)
        assert checked.code != 0, checked
        found = {h["site"]: h for h in json.loads(checked.out)}
        assert found["web9"]["reachability"] == "unreachable"
        assert re.search(r"port \d+: Connection refused", found["web9"]["error"]), found["web9"]
        assert found["web10"]["reachability"] == "connected"
    finally:
        ssh_fleet.start("web9")
    # reopened once sshd is back: the job waits out the back-off, then runs there
    again = server.cli("exec", "--hosts", "web9", "--", "echo back on $CORRAL_SITE", timeout=60)
    assert again.code == 0, again
    assert "web9 | back on web9" in again.out


def test_a_job_dies_with_the_hosts_python_killed_outright(
    server: Cluster, shared_dir: Path
) -> None:
    # the job's parent is the host's Python that runs it (corral's executor, shipped over SSH)
    pids = shared_dir / "pids"
    running = server.cli_bg(
        "exec-oom", "exec", "--hosts", "web8", "--", f"echo $$ $PPID $PWD > {pids}; sleep 60"
    )
    job_text, python_text, workdir_text = wait_until(
        lambda: pids.exists() and pids.read_text().split(), 30, "the job"
    )
    job, python, workdir = int(job_text), int(python_text), Path(workdir_text)
    assert workdir.parent.name == "corral-worker-site-web8"  # the site's own, on the host
    os.kill(python, signal.SIGKILL)  # as the out-of-memory killer would
    wait_until(lambda: not pid_alive(job), 10, f"web8's job (pid {job}) to die with its Python")
    assert workdir.is_dir()  # left by the Python killed
    assert running.wait(60) == 1, running.tail()
    assert re.search(
        r"^web8\s+failed\s+-\s.*lost the SSH connection to web8", running.stdout(), re.M
    )
    # connected again for the next job
    again = server.cli("exec", "--hosts", "web8", "--", "echo back on $CORRAL_SITE", timeout=60)
    assert again.code == 0, again
    assert "web8 | back on web8" in again.out
    assert not workdir.exists()  # cleared by the site's next connection


def test_serve_reports_every_configuration_problem_at_once(tmp_path: Path) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(
        'lease_ttl = "soon"\n'
        "[hosts.web1]\n"
        'ssh = "deploy@web1"\n'
        "port = 0\n"
        "[hosts.web2]\n"
        'roles = ["app"]\n'
    )
    done = subprocess.run(
        [*CORRAL, "serve", "--home", str(tmp_path / "home"), "--config", str(config)],
        capture_output=True,
        text=True,
        env=base_env(),
        timeout=30,
    )
    assert done.returncode == 2, done
    for key in ("lease_ttl", "hosts.web1.port", "hosts.web2.ssh"):
        assert f"{config}: {key}" in done.stderr, done.stderr


PER_HOST = """\
name = "rolling"
schedule = "per-host"

[jobs.stop]
command = "sleep 0.4; echo stopped"
on = { role = "batch" }
fanout = "each"

[jobs.update]
command = "sleep 0.4; echo updated"
on = { role = "batch" }
fanout = "each"

[jobs.start]
command = "sleep 0.4; echo started"
on = { role = "batch" }
fanout = "each"
"""


def test_per_host_runs_hosts_in_parallel_and_steps_in_order_on_each(
    server: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "rolling.toml"
    path.write_text(PER_HOST)
    result = server.cli("submit", str(path), "--json", timeout=60)
    assert result.code == 0, result
    run_id = json.loads(result.out)["id"]
    jobs = server.http().get(f"/api/v1/runs/{run_id}").json()["jobs"]
    by_host: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_host.setdefault(job["worker"], []).append(job)
    assert sorted(by_host) == ["web7", "web8"]
    for host, mine in by_host.items():
        mine.sort(key=lambda j: j["started_at"])
        assert [j["name"] for j in mine] == ["stop", "update", "start"], host
        for before, after in itertools.pairwise(mine):
            assert after["started_at"] >= before["ended_at"], (host, before, after)
    # the two hosts overlapped: each host's steps ran while the other's did
    web7, web8 = by_host["web7"], by_host["web8"]
    assert (
        web7[0]["started_at"] < web8[-1]["ended_at"]
        and web8[0]["started_at"] < web7[-1]["ended_at"]
    )


def test_exclusive_keeps_a_second_run_off_its_hosts(server: Cluster) -> None:
    first = server.cli_bg(
        "exclusive", "exec", "--on", "role=db", "--exclusive", "--", "sleep 2; echo maintained"
    )
    wait_until(
        lambda: any(
            r["name"] == "exec" and r["schedule"] == "exclusive" and r["state"] == "running"
            for r in server.http().get("/api/v1/runs").json()["runs"]
        ),
        30,
        "the exclusive run to start",
    )
    second = server.cli("exec", "--hosts", "web5", "--", "echo after", timeout=60)
    assert second.code == 0, second
    assert first.wait(60) == 0, first.tail()
    runs = server.http().get("/api/v1/runs").json()["runs"]
    exclusive = next(r for r in runs if r["schedule"] == "exclusive")
    later = max((r for r in runs if r["schedule"] == "parallel"), key=lambda r: r["id"])
    job = server.http().get(f"/api/v1/runs/{later['id']}").json()["jobs"][0]
    assert job["worker"] == "web5"
    assert job["started_at"] >= exclusive["ended_at"]


SHARED = """\
name = "release"
schedule = "sequential"

[jobs.version]
command = "echo VERSION=2.4.1 >> $CORRAL_OUTPUT; echo 'NOTE=a = b' >> $CORRAL_OUTPUT"
on = { site = "web3" }

[jobs.stage]
command = "echo SLOT=slot-$CORRAL_SITE >> $CORRAL_OUTPUT"
on = { role = "app" }
fanout = "each"

[jobs.use]
command = "echo \\"$CORRAL_SITE got $CORRAL_SHARED_VERSION_VERSION ($CORRAL_SHARED_VERSION_NOTE) $CORRAL_SHARED_STAGE_SLOT\\""
on = { role = "app" }
fanout = "each"
"""


def test_shared_values_flow_to_later_jobs_per_host(server: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "release.toml"
    path.write_text(SHARED)
    result = server.cli("submit", str(path), "--json", timeout=60)
    assert result.code == 0, result
    run_id = json.loads(result.out)["id"]
    for site in ("web1", "web2", "web3", "web4"):
        log = server.cli("logs", f"{run_id}/use[{site}]")
        assert log.out == f"{site} got 2.4.1 (a = b) slot-{site}\n", log
    shared = server.http().get(f"/api/v1/runs/{run_id}/shared").json()["shared"]
    assert shared["version"] == {"VERSION": "2.4.1", "NOTE": "a = b"}
    assert shared["stage[web2]"] == {"SLOT": "slot-web2"}


def test_exec_on_a_terminal_shows_where_the_hosts_stand_while_they_run(server: Cluster) -> None:
    """On a terminal, a status line under the hosts' lines (gone at the end, before the
    summary); the hosts' lines and the summary as without one."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    env = server.env("admin")
    env.update(COLUMNS="120", TERM="xterm")
    proc = subprocess.Popen(
        [*CORRAL, "exec", "--hosts", "web3,web4", "--", "echo hi; sleep 1.5; echo bye"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=server.base,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 1.0)[0]:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end closed: the command is done
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(10) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
    assert re.search(r"0/2 hosts done, 2 running, \d+\.\ds", text), text
    for site in ("web3", "web4"):
        assert f"{site} | hi" in text and f"{site} | bye" in text, text
        assert re.search(rf"^{site}\s+passed\s+0\s", text, re.M), text
