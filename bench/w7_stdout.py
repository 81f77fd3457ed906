"""W7: one job writing a lot to stdout (1 GiB by default), next to `cat > /dev/null`.

corral: a fresh ``corral serve --local-slots 2`` per repetition, with ``--log-limit``
raised so the local worker keeps the whole output (the default cap is 16 MiB). One command job writes the
bytes; the figure is bytes stored / (submit → run ended). The bytes stored are
read back from the store afterwards (the attempt's ``log_bytes`` and the sum of
its chunks) and must equal what the job wrote. The local worker runs inside the
server process, so "worker peak RSS" is the server's peak RSS (VmHWM).

floor: the same producer piped into ``cat > /dev/null``.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from bench import procs
from bench.systems.corral_sys import CorralSystem

LINE_BYTES = 128  # the job's output is lines of this size (127 characters and a newline)
ROWS = ("w7:corral", "w7:cat")


def producer(nbytes: int) -> str:
    """A shell pipeline writing exactly ``nbytes`` of 128-byte text lines to stdout."""
    return f"yes \"$(printf '%0{LINE_BYTES - 1}d' 0)\" | head -c {nbytes}"


def corral_once(workdir: Path, nbytes: int) -> dict[str, float]:
    system = CorralSystem(workdir)
    # room for the whole output, and a little for corral's own notes in the log
    system.extra_args = ["--log-limit", str(nbytes + 1024 * 1024)]
    try:
        system.start()
        assert system.client is not None and system.server is not None
        rss_before = procs.peak_rss_mb([system.server.pid])
        t0 = time.perf_counter()
        run = system.client.submit(
            {"name": "bench-w7", "jobs": {"out": {"command": ["sh", "-c", producer(nbytes)]}}}
        )
        final = system.client.wait(run["id"], timeout=600 + nbytes / 1e6)
        dt = time.perf_counter() - t0
        if final["state"] != "passed":
            raise RuntimeError(f"W7 run ended {final['state']}")
        rss = procs.peak_rss_mb([system.server.pid])
        stored, counted = stored_bytes(system.home / "corral.db", int(run["id"]))
    finally:
        system.stop()
        shutil.rmtree(system.home, ignore_errors=True)
    if stored != nbytes or counted != nbytes:
        raise RuntimeError(
            f"W7: the job wrote {nbytes} bytes; the store holds {stored} in chunks "
            f"and counts {counted} (log cap not raised?)"
        )
    out = {"w7_mb_per_s": nbytes / 1e6 / dt, "w7_seconds": dt}
    if rss is not None:
        out["w7_rss_server_mb"] = rss
    if rss_before is not None:
        out["w7_rss_server_before_mb"] = rss_before
    return out


def stored_bytes(db: Path, run_id: int) -> tuple[int, int]:
    """(sum of the stdout chunks, the attempt's log_bytes) of the run's one job, read from
    the SQLite store after the server stopped."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (aid, counted) = conn.execute(
            "SELECT a.id, a.log_bytes FROM attempts a JOIN jobs j ON a.job_id = j.id "
            "WHERE j.run_id = ?",
            (run_id,),
        ).fetchone()
        (stored,) = conn.execute(
            "SELECT coalesce(sum(length(CAST(data AS BLOB))), 0) FROM log_chunks "
            "WHERE attempt_id = ? AND stream = 'stdout'",
            (aid,),
        ).fetchone()
    finally:
        conn.close()
    return int(stored), int(counted)


def cat_once(nbytes: int) -> dict[str, float]:
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", producer(nbytes) + " | cat > /dev/null"], check=True)
    dt = time.perf_counter() - t0
    return {"w7_mb_per_s": nbytes / 1e6 / dt, "w7_seconds": dt}


def measure(workdir: Path, mib: int, log=print) -> dict[str, dict[str, float]]:
    """One repetition: corral, then the floor."""
    nbytes = mib * 1024 * 1024
    out: dict[str, dict[str, float]] = {}
    out["w7:corral"] = corral_once(workdir / "w7-corral", nbytes)
    log("  w7 corral: " + _fmt(out["w7:corral"]))
    out["w7:cat"] = cat_once(nbytes)
    log("  w7 cat > /dev/null: " + _fmt(out["w7:cat"]))
    return out


def _fmt(vals: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:,.1f}" for k, v in vals.items())
