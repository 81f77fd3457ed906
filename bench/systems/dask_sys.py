"""Dask distributed: LocalCluster(n_workers=2, threads_per_worker=1) in its own process
(bench/systems/dask_cluster.py), driven by a Client from the harness. In memory, not durable."""

from __future__ import annotations

import contextlib
import signal
import sys
from importlib import metadata

from bench import procs
from bench.systems.base import System, check_value, remaining
from bench.tasks import common


class DaskSystem(System):
    name = "dask"
    has_batch = True  # Client.map

    def __init__(self, workdir):
        super().__init__(workdir)
        self.client = None
        self.cluster: procs.ManagedProc | None = None

    def version(self) -> str:
        return f"dask {metadata.version('dask')}, distributed {metadata.version('distributed')}"

    def describe(self) -> str:
        return (
            "`LocalCluster(n_workers=2, threads_per_worker=1)` (processes) in its own "
            "process, Client in the harness; submit(pure=False); batch = `Client.map`; "
            "wait = `distributed.wait` + `gather`; in memory, not durable"
        )

    def start(self) -> None:
        from distributed import Client

        port = procs.free_port()
        self.cluster = self.spawn(
            "dask-cluster",
            [sys.executable, "-m", "bench.systems.dask_cluster", "--port", str(port)],
            stop_signal=signal.SIGTERM,
        )
        addr = f"tcp://127.0.0.1:{port}"
        procs.wait_until(
            "dask scheduler",
            lambda: "READY" in self.cluster.log_tail(50),
            timeout=90,
            procs=[self.cluster],
        )
        self.client = Client(addr, timeout=30)
        self.client.wait_for_workers(2, timeout=60)
        self.warm_up()

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
            self.client = None
        for p in reversed(self.procs):
            p.stop(grace=20)
        self.procs.clear()

    # handles are (i, Future)
    def submit_one(self, i, kind):
        return (i, self.client.submit(common.BODIES[kind], i, pure=False))

    def batch(self, kind, n):
        return list(enumerate(self.client.map(common.BODIES[kind], range(n), pure=False)))

    def wait(self, handles, deadline):
        from distributed import wait

        futs = [f for _, f in handles]
        wait(futs, timeout=remaining(deadline))
        values = self.client.gather(futs)
        for (i, _), v in zip(handles, values, strict=True):
            check_value(v, i, "dask")

    def wait_one(self, handle, deadline):
        i, fut = handle
        check_value(fut.result(timeout=remaining(deadline)), i, "dask")

    def rss_mb(self):
        if self.cluster is None:
            return {"server": None, "worker": None}
        kids = [k.pid for k in self.cluster.descendants()]
        return {"server": procs.peak_rss_mb([self.cluster.pid]), "worker": procs.peak_rss_mb(kids)}
