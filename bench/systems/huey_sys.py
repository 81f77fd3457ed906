"""Huey: SqliteHuey (a fresh file per start), one consumer with 2 process workers.

The consumer's polling is tuned to 10 ms, as in BENCH.md: ``-d 0.01 -m 0.01
-b 1`` (default: 0.1 s growing x1.15 up to 10 s when idle). The harness
awaits results with ``get(blocking=True, backoff=1, max_delay=...)`` polling
every 1 ms for one job (W2) and every 10 ms per result when collecting many
(huey's default: 0.05 s growing x1.15 up to 1 s). Huey has no batch API (``map`` is a
loop over single enqueues), so it has no batch figures.
"""

from __future__ import annotations

import contextlib
import os
import signal
from importlib import metadata

from bench import procs
from bench.systems.base import System, check_value, remaining

CONSUMER_POLL_S = 0.01
WORKER_TYPE = "process"  # huey's default is "thread": about the same here (see README)
#: harness-side result polling: one job (W2) / many jobs (W1, W3) — as for procrastinate
POLL_ONE_S = 0.001
POLL_MANY_S = 0.01


class HueySystem(System):
    name = "huey"
    has_batch = False

    def __init__(self, workdir):
        super().__init__(workdir)
        self.consumer: procs.ManagedProc | None = None
        self.huey = None
        self._starts = 0

    def version(self) -> str:
        return f"huey {metadata.version('huey')}"

    def describe(self) -> str:
        return (
            f"SqliteHuey (defaults: WAL, synchronous={_synchronous()}), "
            f"`huey_consumer -w 2 -k {WORKER_TYPE} "
            "-d 0.01 -m 0.01 -b 1` (consumer polling tuned to 10 ms); results polled "
            "every 1 ms (one job) / 10 ms (many); no batch API (`map` loops over enqueue)"
        )

    def start(self) -> None:
        from bench.tasks import huey_tasks

        self._starts += 1
        db = self.workdir / f"huey-{os.getpid()}-{self._starts}.db"
        for suffix in ("", "-wal", "-shm"):
            (db.parent / (db.name + suffix)).unlink(missing_ok=True)
        self.db = db
        self.huey, self.tasks = huey_tasks.build(str(db))
        self.consumer = self.spawn(
            "huey-consumer",
            [
                procs.venv_bin("huey_consumer"),
                "bench.tasks.huey_tasks.huey",
                "-w",
                "2",
                "-k",
                WORKER_TYPE,
                "-d",
                str(CONSUMER_POLL_S),
                "-m",
                str(CONSUMER_POLL_S),
                "-b",
                "1.0",
                "-q",
            ],
            env={"BENCH_HUEY_DB": str(db)},
            stop_signal=signal.SIGINT,  # huey's graceful shutdown signal
        )
        if WORKER_TYPE == "process":
            procs.wait_until(
                "huey workers",
                lambda: len(self.consumer.descendants()) >= 2,
                timeout=60,
                procs=[self.consumer],
            )
        self.warm_up()

    def stop(self) -> None:
        super().stop()
        if self.huey is not None:
            with contextlib.suppress(Exception):
                self.huey.storage.close()
            self.huey = None
        db = getattr(self, "db", None)
        if db is not None:
            for suffix in ("", "-wal", "-shm"):
                (db.parent / (db.name + suffix)).unlink(missing_ok=True)

    # handles are (i, Result)
    def submit_one(self, i, kind):
        return (i, self.tasks[kind](i))

    def wait_one(self, handle, deadline, poll=POLL_ONE_S):
        i, res = handle
        value = res.get(blocking=True, timeout=remaining(deadline), backoff=1.0, max_delay=poll)
        check_value(value, i, "huey")

    def wait(self, handles, deadline):
        for h in handles:
            self.wait_one(h, deadline, poll=POLL_MANY_S)

    def rss_mb(self):
        pids = (
            [self.consumer.pid] + [k.pid for k in self.consumer.descendants()]
            if self.consumer
            else []
        )
        return {"server": None, "worker": procs.peak_rss_mb(pids)}


def _synchronous() -> str:
    """What SqliteHuey's defaults leave SQLite syncing, read back from a connection of its own.

    Huey's `fsync=None` sets no `synchronous`, so SQLite's own default (FULL here: each commit
    synced) holds; the table then says what ran rather than what was assumed."""
    import tempfile

    from bench.tasks import huey_tasks

    with tempfile.TemporaryDirectory() as tmp:
        huey, _ = huey_tasks.build(os.path.join(tmp, "probe.db"))
        try:
            with huey.storage.db() as cursor:
                level = cursor.execute("pragma synchronous").fetchone()[0]
        finally:
            huey.storage.close()
    names = {0: "OFF, nothing synced", 1: "NORMAL", 2: "FULL, each commit synced"}
    return names.get(level, str(level))
