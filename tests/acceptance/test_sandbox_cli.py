"""Sandboxed code, limits, --run-as and secrets through real `corral serve` and `corral worker`."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from acceptance_helpers import CORRAL, Cluster, base_env

from corral.worker.sandbox import check, find_bwrap

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

JOB_USER = "corral-job"
SECRET = "sk-live-7Hq2Zx9Lm4Rt"
PEM = "-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END TEST KEY-----"

SPEC = """\
name = "boxed"

[jobs.code]
code = '''
import os, sys, time
print("uid", os.getuid(), flush=True)
key = os.environ["API_KEY"]
sys.stdout.write("key=" + key[:6]); sys.stdout.flush()
time.sleep(0.4)
print(key[6:] + " done", flush=True)
print(os.environ["PEM"], flush=True)
try:
    open("/etc/corral-probe", "w")
except OSError as exc:
    print("write denied:", exc.strerror, flush=True)
'''
secrets = ["API_KEY", "PEM"]
limits = { cpu = "20s", memory = "256MiB", procs = 64, fsize = "16MiB", nofile = 256 }

[jobs.hog]
code = 'print("STARTED", flush=True); b = bytearray(400 * 1024 * 1024); print("ALLOCATED")'
limits = { memory = "64MiB" }

[jobs.leak]
command = "echo starting; printf '%s' \\"$API_KEY\\" >&2; exit 7"
secrets = ["API_KEY"]
"""


@pytest.fixture
def job_user(missing_service: Callable[[str, str], NoReturn]) -> str:
    if os.geteuid() != 0:
        missing_service("root", "--run-as tests need root")
    try:
        pwd.getpwnam(JOB_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", JOB_USER],
            check=True,
        )
    why = check(find_bwrap())
    if why:
        missing_service("bwrap", why)
    return JOB_USER


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(f"/tmp/corral-accept-{os.getpid()}")
    d.mkdir(mode=0o711, exist_ok=True)
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_code_jobs_run_boxed_as_the_job_user_with_secrets_masked(
    cluster: Cluster, tmp_path: Path, job_user: str, workdir: Path
) -> None:
    cluster.home.mkdir(parents=True, exist_ok=True)
    (cluster.home / "corral.toml").write_text(
        f'[secrets]\nAPI_KEY = "{SECRET}"\nPEM = """{PEM}"""\n'
    )
    cluster.start(local_slots=0, lease_ttl="5s")
    cluster.worker(
        "boxer",
        extra=("--allow", "command,code", "--run-as", job_user, "--workdir", str(workdir)),
    )
    spec = tmp_path / "boxed.toml"
    spec.write_text(SPEC)
    submitted = cluster.cli("submit", str(spec), "--json", timeout=90)
    assert submitted.code == 1, submitted  # the hog and the leak fail
    run_id = json.loads(submitted.out)["id"]
    jobs = {
        j["label"]: j for j in json.loads(cluster.cli("status", str(run_id), "--json").out)["jobs"]
    }
    assert jobs["code"]["state"] == "passed", jobs["code"]
    assert jobs["hog"]["state"] == "failed"
    assert jobs["leak"]["state"] == "failed" and jobs["leak"]["exit_code"] == 7

    log = cluster.cli("logs", f"{run_id}/code")
    assert log.code == 0, log
    uid = pwd.getpwnam(job_user).pw_uid
    assert f"uid {uid}" in log.out
    assert "key=*** done" in log.out  # split across two chunks, masked whole
    assert "write denied: Read-only file system" in log.out
    everything = log.out + log.err
    assert SECRET not in everything and SECRET[:6] not in everything
    assert "MIIBOgIBAAJBAKj34GkxFhD9" not in everything and "BEGIN TEST KEY" not in everything

    hog = cluster.cli("logs", f"{run_id}/hog")
    assert "STARTED" in hog.out and "ALLOCATED" not in hog.out
    detail = cluster.cli("status", str(run_id), "--json")
    assert SECRET not in detail.out

    leak = cluster.cli("logs", f"{run_id}/leak")
    assert "starting" in leak.out and SECRET not in leak.out + leak.err
    assert "***" in leak.err


def test_unknown_secrets_and_denied_networks_are_refused_at_submit(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start(local_slots=0)
    spec = tmp_path / "bad.toml"
    spec.write_text('[jobs.a]\ncommand = "true"\nsecrets = ["NOPE"]\n')
    refused = cluster.cli("submit", str(spec))
    assert refused.code != 0
    assert "jobs.a.secrets" in refused.err and "unknown secret 'NOPE'" in refused.err
    answer = cluster.http().post(
        "/api/v1/runs", json={"jobs": {"a": {"code": "print()", "secrets": ["NOPE"]}}}
    )
    assert answer.status_code == 422 and "NOPE" in answer.text
    assert cluster.http().get("/api/v1/runs").json()["runs"] == []


def test_a_worker_without_bwrap_refuses_to_take_code_jobs(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start(local_slots=0)
    env = base_env()
    env["PATH"] = "/nonexistent"
    started = time.monotonic()
    done = subprocess.run(
        [
            *CORRAL,
            "worker",
            "--server",
            cluster.url,
            "--token",
            cluster.join_token(),
            "--allow",
            "command,code",
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0
    assert b"bwrap" in done.stderr and b"drop code from --allow" in done.stderr, done.stderr
    assert time.monotonic() - started < 60
    assert cluster.workers() == {}  # it never joined


PEEK = """
import os
print("STARTED", flush=True)
home = os.environ.get("PEEK_HOME", "")
for name in ("token", "corral.db"):
    try:
        open(os.path.join(home, name), "rb").read(1)
        print("READ", name, flush=True)
    except OSError as exc:
        print("DENIED", name, type(exc).__name__, flush=True)
"""


def test_the_local_worker_boxes_code_jobs_away_from_the_servers_home(
    shared: Cluster, missing_service: Callable[[str, str], NoReturn]
) -> None:
    why = check(find_bwrap())
    if why:
        missing_service("bubblewrap", why)
    workers = shared.workers()
    local = next(w for w in workers.values() if w["labels"].get("local") == "true")
    assert "code" in local["allow"], local
    assert (shared.home / "token").exists()  # what the job must not read
    run = shared.submit(
        {
            "name": "local-box",
            "jobs": {"peek": {"code": PEEK, "env": {"PEEK_HOME": str(shared.home)}}},
        }
    )
    done = shared.wait_run(run["id"])
    assert done["state"] == "passed", shared.job(run["id"], "peek")
    log = shared.cli("logs", f"{run['id']}/peek")
    assert "STARTED" in log.out, log
    assert "DENIED token" in log.out and "DENIED corral.db" in log.out, log
    assert "READ" not in log.out, log
