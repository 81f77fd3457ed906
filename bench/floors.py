"""Floors: the same work with no system at all, measured in the same run.

* ``floor:loop`` — the task bodies called in a Python loop: W1 (5,000
  ``noop(i)``), W2 (200 timed ``noop(i)`` calls), W3 (500 ``shell_true(i)``,
  i.e. ``subprocess.run(["true"])`` one after the other).
* ``floor:subprocess2`` — ``subprocess.run(["true"])`` in 2 processes at a
  time (W3's reference: W3 is reported as a share of this).
* ``floor:sqlite`` — SQLite WAL, ``synchronous=FULL``: insert → update →
  select cycles, each statement its own transaction (autocommit).
* ``floor:http`` — one HTTP request per call and nothing else: corral's client
  POSTs a single-job run spec to uvicorn serving an app that answers 201 at once
  (``bench/floor_http/app.py``): W1 (5,000 in a row) and W2 (200 timed). No
  system that takes each call over HTTP from this client can beat it.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.tasks.common import noop, shell_true
from bench.workloads import percentile

ROWS = ("floor:loop", "floor:subprocess2", "floor:sqlite", "floor:http")


def loop_w1(n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    for i in range(n):
        noop(i)
    dt = time.perf_counter() - t0
    return {"w1_single_enqueue_per_s": n / dt, "w1_single_e2e_per_s": n / dt}


def loop_w2(n: int) -> dict[str, float]:
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        noop(i)
        lat.append((time.perf_counter() - t0) * 1000)
    return {"w2_p50_ms": percentile(lat, 50), "w2_p99_ms": percentile(lat, 99)}


def loop_w3(n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    for i in range(n):
        shell_true(i)
    return {"w3_e2e_per_s": n / (time.perf_counter() - t0)}


def _true_loop(go, count: int) -> None:
    go.wait(30)
    for _ in range(count):
        subprocess.run(["true"], check=True)


def subprocess_parallel(n: int, width: int = 2) -> dict[str, float]:
    """``n`` x ``true`` split over ``width`` processes started beforehand."""
    ctx = mp.get_context("fork")
    go = ctx.Event()
    per = [n // width + (1 if k < n % width else 0) for k in range(width)]
    workers = [ctx.Process(target=_true_loop, args=(go, c), daemon=True) for c in per]
    for w in workers:
        w.start()
    try:
        time.sleep(0.2)  # let them reach the barrier
        t0 = time.perf_counter()
        go.set()
        for w in workers:
            w.join(timeout=120)
        dt = time.perf_counter() - t0
        if any(w.exitcode != 0 for w in workers):
            raise RuntimeError(f"subprocess floor: exit codes {[w.exitcode for w in workers]}")
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join(5)
    return {"w3_e2e_per_s": n / dt}


def sqlite_cycles(path: Path, n: int) -> dict[str, float]:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL, result TEXT)")
        t0 = time.perf_counter()
        for i in range(n):
            cur = db.execute("INSERT INTO jobs (state) VALUES ('queued')")
            rid = cur.lastrowid
            db.execute("UPDATE jobs SET state = 'passed', result = ? WHERE id = ?", (str(i), rid))
            row = db.execute("SELECT state, result FROM jobs WHERE id = ?", (rid,)).fetchone()
            if row[0] != "passed":
                raise RuntimeError("sqlite floor: lost update")
        dt = time.perf_counter() - t0
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    return {"sqlite_cycles_per_s": n / dt}


def _single_run(i: int) -> dict[str, Any]:
    """The body of one single submit, as the corral adapter sends it."""
    return {"name": f"bench-noop-{i}", "jobs": {"j": {"task": "noop", "args": {"x": i}}}}


def http_requests(w1_n: int, w2_n: int, workdir: Path) -> dict[str, float]:
    """W1's and W2's calls as bare HTTP requests: the client and server corral uses, no work."""
    import httpx

    from corral.client import Http

    port = procs.free_port()
    server = procs.spawn(
        "floor-http",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.floor_http.app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        workdir / "logs",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        procs.wait_until(
            "floor-http server",
            lambda: httpx.post(base + "/", timeout=2).status_code == 201,
            timeout=30,
            procs=[server],
        )
        http = Http(base, "floor")
        try:
            for i in range(50):  # a warm connection, as the systems have
                http.request("POST", "/api/v1/runs", json=_single_run(i))
            out: dict[str, float] = {}
            if w1_n:
                t0 = time.perf_counter()
                for i in range(w1_n):
                    http.request("POST", "/api/v1/runs", json=_single_run(i))
                dt = time.perf_counter() - t0
                out.update({"w1_single_enqueue_per_s": w1_n / dt, "w1_single_e2e_per_s": w1_n / dt})
            if w2_n:
                lat = []
                for i in range(w2_n):
                    t0 = time.perf_counter()
                    http.request("POST", "/api/v1/runs", json=_single_run(i))
                    lat.append((time.perf_counter() - t0) * 1000)
                out.update({"w2_p50_ms": percentile(lat, 50), "w2_p99_ms": percentile(lat, 99)})
            return out
        finally:
            http.close()
    finally:
        server.stop()


def measure(
    workloads: list[str], w1_n: int, w2_n: int, w3_n: int, workdir: Path, log=print
) -> dict[str, dict[str, float]]:
    """One repetition of every floor; returns {row: {metric: value}}."""
    out: dict[str, dict[str, float]] = {r: {} for r in ROWS}
    if "W1" in workloads:
        out["floor:loop"].update(loop_w1(w1_n))
        out["floor:sqlite"].update(sqlite_cycles(workdir / "floor-sqlite.db", w1_n))
    if "W2" in workloads:
        out["floor:loop"].update(loop_w2(w2_n))
    if "W1" in workloads or "W2" in workloads:
        out["floor:http"].update(
            http_requests(
                w1_n if "W1" in workloads else 0, w2_n if "W2" in workloads else 0, workdir
            )
        )
    if "W3" in workloads:
        out["floor:loop"].update(loop_w3(w3_n))
        out["floor:subprocess2"].update(subprocess_parallel(w3_n))
    for row, vals in out.items():
        if vals:
            log(f"  {row}: " + ", ".join(f"{k}={v:,.1f}" for k, v in vals.items()))
    return out
