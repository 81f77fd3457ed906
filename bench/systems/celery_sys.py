"""Celery 5: Redis broker and result backend (DB 13), prefork pool, concurrency 2."""

from __future__ import annotations

import contextlib
import signal
from importlib import metadata

from bench import procs
from bench.systems.base import System, check_value, remaining

REDIS_DB = 13
URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


class CelerySystem(System):
    name = "celery"
    has_batch = True  # group(...).apply_async()

    def __init__(self, workdir):
        super().__init__(workdir)
        self.worker: procs.ManagedProc | None = None
        self.redis_pid = procs.redis_pid()

    def version(self) -> str:
        return f"celery {metadata.version('celery')}, kombu {metadata.version('kombu')}"

    def describe(self) -> str:
        return (
            f"Redis broker + result backend (127.0.0.1:6379 DB {REDIS_DB}), "
            "`celery worker -P prefork -c 2 --without-gossip --without-mingle "
            "--without-heartbeat`, other settings default; batch = `group(...).apply_async()`; "
            "wait = `ResultSet.get()`; CPU includes redis-server"
        )

    def start(self) -> None:
        import os

        import redis

        redis.Redis.from_url(URL, socket_timeout=10).flushdb()
        os.environ["BENCH_CELERY_URL"] = URL
        from bench.tasks import celery_tasks

        self.app = celery_tasks.app
        self.tasks = celery_tasks.TASKS
        self.worker = self.spawn(
            "celery-worker",
            [
                procs.venv_bin("celery"),
                "-A",
                "bench.tasks.celery_tasks",
                "worker",
                "-P",
                "prefork",
                "-c",
                "2",
                "-l",
                "WARNING",
                "-n",
                "corral-bench@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env={"BENCH_CELERY_URL": URL},
            stop_signal=signal.SIGTERM,  # warm shutdown
        )
        # ready when its two pool processes are there and a task comes back
        procs.wait_until(
            "celery pool",
            lambda: len(self.worker.descendants()) >= 2,
            timeout=60,
            procs=[self.worker],
        )
        procs.wait_until(
            "celery first task",
            lambda: self.tasks["noop"].delay(-1).get(timeout=5) == -1,
            timeout=60,
            procs=[self.worker],
        )
        self.warm_up()

    def stop(self) -> None:
        super().stop()
        app = getattr(self, "app", None)
        if app is not None:
            with contextlib.suppress(Exception):
                app.close()

    # handles are (i, AsyncResult)
    def submit_one(self, i, kind):
        return (i, self.tasks[kind].delay(i))

    def batch(self, kind, n):
        from celery import group

        task = self.tasks[kind]
        return list(enumerate(group(task.s(i) for i in range(n)).apply_async().results))

    def wait(self, handles, deadline):
        from celery.result import ResultSet

        values = ResultSet([r for _, r in handles]).get(timeout=remaining(deadline), propagate=True)
        if len(values) != len(handles):
            raise RuntimeError(f"celery: {len(values)} results for {len(handles)} tasks")
        for (i, _), v in zip(handles, values, strict=True):
            check_value(v, i, "celery")

    def wait_one(self, handle, deadline):
        i, r = handle
        check_value(r.get(timeout=remaining(deadline), propagate=True), i, "celery")

    def cpu_externals(self):
        return [self.redis_pid] if self.redis_pid else []

    def rss_mb(self):
        pids = [self.worker.pid] + [k.pid for k in self.worker.descendants()] if self.worker else []
        return {
            "server": procs.current_rss_mb(self.cpu_externals()),
            "worker": procs.peak_rss_mb(pids),
        }
