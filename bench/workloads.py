"""The workloads (BENCH.md), written once against the adapter interface.

Each function returns ``{metric: value}`` for one repetition. Metric names
(also the JSON keys):

W1  w1_single_enqueue_per_s, w1_single_e2e_per_s, w1_single_cpu_ms_per_task,
    w1_single_client_cpu_ms_per_task, w1_rss_server_mb, w1_rss_worker_mb,
    and w1_batch_* the same through the batch API
W2  w2_p50_ms, w2_p99_ms, w2_mean_ms
W3  w3_e2e_per_s (w3_share_of_floor2 is added by the runner)
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench import procs
from bench.systems.base import System


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p50 of 200 values is the 100th, p99 the 198th)."""
    s = sorted(values)
    k = max(1, math.ceil(p / 100 * len(s)))
    return s[k - 1]


def _deadline(n: int, per_s_floor: float, base: float) -> float:
    """A generous bound: ``base`` s plus ``n`` tasks at ``per_s_floor`` tasks/s."""
    return time.monotonic() + base + n / per_s_floor


def _submit_many(system: System, kind: str, n: int, deadline: float) -> list[Any]:
    handles = []
    for i in range(n):
        handles.append(system.submit_one(i, kind))
        if i % 200 == 199 and time.monotonic() > deadline:
            raise TimeoutError(f"enqueue: only {i + 1} of {n} submitted before the deadline")
    return handles


def w1(system: System, n: int, mode: str) -> dict[str, float]:
    """``n`` noop(i): enqueued one call each (mode "single") or in one batch, then wait for all."""
    deadline = _deadline(n, per_s_floor=20, base=60)
    cpu0 = procs.cpu_snapshot(system.cpu_roots(), system.cpu_externals())
    client0 = procs.self_cpu()
    t0 = time.perf_counter()
    if mode == "single":
        handles = _submit_many(system, "noop", n, deadline)
    else:
        handles = system.batch("noop", n)
    t1 = time.perf_counter()
    system.wait(handles, deadline)
    t2 = time.perf_counter()
    client = procs.self_cpu() - client0
    cpu = procs.cpu_delta(cpu0, procs.cpu_snapshot(system.cpu_roots(), system.cpu_externals()))
    p = f"w1_{mode}_"
    out = {
        p + "enqueue_per_s": n / (t1 - t0),
        p + "e2e_per_s": n / (t2 - t0),
        p + "cpu_ms_per_task": cpu * 1000 / n,
        p + "client_cpu_ms_per_task": client * 1000 / n,
    }
    if mode == "single":
        rss = system.rss_mb()
        if rss.get("server") is not None:
            out["w1_rss_server_mb"] = rss["server"]
        if rss.get("worker") is not None:
            out["w1_rss_worker_mb"] = rss["worker"]
    return out


def w2(system: System, n: int) -> dict[str, float]:
    """``n`` sequential noop(i): submit, wait for the result, next."""
    deadline = _deadline(n, per_s_floor=2, base=60)
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        system.call_one(i, "noop", deadline)
        lat.append((time.perf_counter() - t0) * 1000)
    return {
        "w2_p50_ms": percentile(lat, 50),
        "w2_p99_ms": percentile(lat, 99),
        "w2_mean_ms": sum(lat) / len(lat),
    }


def w3(system: System, n: int, use_batch: bool) -> dict[str, float]:
    """``n`` shell_true(i), through the batch API when asked and the system has one."""
    deadline = _deadline(n, per_s_floor=10, base=60)
    t0 = time.perf_counter()
    if use_batch and system.has_batch:
        handles = system.batch("shell", n)
    else:
        handles = _submit_many(system, "shell", n, deadline)
    system.wait(handles, deadline)
    return {"w3_e2e_per_s": n / (time.perf_counter() - t0)}
