"""Rolling deploys and sudo on the SSH fleet through the CLI: max_parallel and max_failures stop
a rollout at its first broken host; a job's sudo gets its password from a secret, never a log."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from acceptance_helpers import Cluster, Procs
from fleet_sshd import PASSWORD, USER, SshFleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROLES = {"web1": ["app"], "web2": ["app"], "web3": ["app"], "web4": ["app"], "web5": ["db"]}
SUDOERS = Path("/etc/sudoers.d/corral-fleet-test")


@pytest.fixture(scope="module")
def sudoers(ssh_fleet: SshFleet) -> Iterator[None]:
    """The test user may run anything as root with its password, asked every time."""
    if not shutil.which("sudo"):
        pytest.fail("sudo not found (Debian: apt-get install -y sudo)")
    SUDOERS.write_text(f"Defaults:{USER} timestamp_timeout=0\n{USER} ALL=(ALL:ALL) ALL\n")
    SUDOERS.chmod(0o440)
    try:
        check = subprocess.run(["visudo", "-c", "-f", str(SUDOERS)], capture_output=True)
        assert check.returncode == 0, check
        yield
    finally:
        SUDOERS.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def _rollout_server(
    tmp_path_factory: pytest.TempPathFactory, ssh_fleet: SshFleet, sudoers: None
) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("rollout")
    config = base / "corral.toml"
    # only the hosts this file uses: each one is a worker with its own SSH connection
    listed = ssh_fleet.toml(ROLES, f'[secrets]\nDEPLOY_SUDO = "{PASSWORD}"')
    config.write_text(re.sub(r"\[hosts\.web(?:[6-9]|10)\]\n(?:[^\[\n].*\n)*", "", listed))
    keeper = Procs()
    try:
        yield Cluster(keeper, base, "rollout-server").start(
            local_slots=0, lease_ttl="5s", extra=("--config", str(config))
        )
    finally:
        keeper.close()


@pytest.fixture
def server(_rollout_server: Cluster, procs: Procs, tmp_path: Path) -> Cluster:
    return _rollout_server.borrow(procs, tmp_path)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the hosts' user may write (pytest's own temp folders are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="corral-rollout-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_of(err: str) -> str:
    found = re.search(r"run (\d+)", err)
    assert found, err
    return found.group(1)


def test_a_rolling_deploy_stops_at_the_second_host_that_fails(
    server: Cluster, shared_dir: Path
) -> None:
    # the second host to deploy breaks, whichever it is: hosts lease in no fixed order
    deploy = (
        f"n=$(ls {shared_dir} | wc -l); touch {shared_dir}/$CORRAL_SITE; sleep 0.3; "
        'echo "deployed $CORRAL_SITE"; [ "$n" -ne 1 ]'
    )
    result = server.cli(
        "exec",
        "--on",
        "role=app",
        "--per-host",
        "--max-parallel",
        "1",
        "--max-failures",
        "1",
        "--",
        deploy,
        timeout=90,
    )
    assert result.code == 1, result
    run = server.http().get(f"/api/v1/runs/{run_of(result.err)}").json()
    assert run["max_parallel"] == 1 and run["max_failures"] == 1
    assert run["state"] == "failed"
    by_state: dict[str, list[dict[str, object]]] = {}
    for job in run["jobs"]:
        by_state.setdefault(str(job["state"]), []).append(job)
    assert sorted(by_state) == ["canceled", "failed", "passed"], run["jobs"]
    (passed,), (failed,) = by_state["passed"], by_state["failed"]
    assert len(by_state["canceled"]) == 2
    # one host at a time: the second started after the first had ended
    assert float(str(failed["started_at"])) >= float(str(passed["ended_at"]))
    for job in by_state["canceled"]:
        assert job["reason"] == f"stopped: max_failures 1 reached ({failed['label']} failed)"
        assert job["worker"] is None  # never handed to its host
    ran = sorted(p.name for p in shared_dir.iterdir())
    assert ran == sorted([str(passed["instance"]), str(failed["instance"])])
    summary = result.out[result.out.index("HOST") :]
    assert len(re.findall(r"^web\d\s+canceled\s", summary, re.M)) == 2, summary


def test_a_jobs_sudo_gets_the_password_from_a_secret_and_no_log_shows_it(
    server: Cluster, _rollout_server: Cluster
) -> None:
    command = (
        'if sudo -n true 2>/dev/null; then echo "sudo -n worked"; else echo "sudo -n refused"; fi; '
        'echo "I am $(sudo whoami)"; echo "and again $(sudo -u nobody whoami)"; '
        'env | sed "s/^/env: /"; '
        '"$SUDO_ASKPASS" "asked directly: "'
    )
    result = server.cli(
        "exec", "--hosts", "web5", "--sudo", "DEPLOY_SUDO", "--", command, timeout=90
    )
    assert result.code == 0, result
    lines = [line.removeprefix("web5 | ") for line in result.out.splitlines()]
    assert "sudo -n refused" in lines, result  # the host's sudo does want a password
    assert "I am root" in lines and "and again nobody" in lines, result
    env = [line for line in lines if line.startswith("env: ")]
    assert any(line.startswith("env: SUDO_ASKPASS=") for line in env)
    assert not any("***" in line for line in env)  # the password is not in the job's env
    assert "***" in lines  # the job may read it, as any secret it names: masked
    run_id = run_of(result.err)
    http = server.http()
    answers = [
        http.get(f"/api/v1/runs/{run_id}").text,
        http.get(f"/api/v1/runs/{run_id}/jobs/web5").text,
        http.get(f"/api/v1/runs/{run_id}/jobs/web5/log").text,
        server.cli("logs", f"{run_id}/web5").out,
        server.cli("status", run_id).out,
    ]
    for text in [*answers, result.out, result.err]:
        assert PASSWORD not in text
    job = json.loads(answers[1])
    assert job["spec"]["sudo"] == "DEPLOY_SUDO"
    assert all(PASSWORD not in str(a.get("reason")) for a in job["attempt_list"])
    # nor in the server's own log, nor in its database
    for path in _rollout_server.base.rglob("*"):
        if path.is_file() and path.name != "corral.toml":
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_sudo_with_an_unknown_secret_is_refused_naming_it(server: Cluster) -> None:
    result = server.cli("exec", "--hosts", "web5", "--sudo", "NOPE", "--", "sudo true")
    assert result.code != 0
    assert "jobs.web5.sudo" in result.err and "NOPE" in result.err, result


def test_without_the_secret_the_hosts_sudo_asks_in_vain(server: Cluster) -> None:
    result = server.cli("exec", "--hosts", "web5", "--", "sudo -n whoami", timeout=60)
    assert result.code == 1, result
    assert "password" in result.err.lower(), result
