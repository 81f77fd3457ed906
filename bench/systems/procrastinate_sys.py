"""Procrastinate: PostgreSQL (its own database, dropped and recreated at every start),
two ``procrastinate worker --concurrency 1`` processes (LISTEN/NOTIFY on, the default).

Procrastinate keeps no results, so waiting means polling the job's status
(``job_manager.get_job_status``) every 1 ms for one job, and one
``count(*)`` over the submitted ids every 10 ms for many.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from importlib import metadata

from bench import procs
from bench.systems.base import System, remaining

DB = "corral_bench_procrastinate"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB}"
POLL_ONE_S = 0.001
POLL_MANY_S = 0.01
DONE = ("succeeded", "failed", "cancelled", "aborted")


class ProcrastinateSystem(System):
    name = "procrastinate"
    has_batch = True  # Task.batch_defer

    def __init__(self, workdir):
        super().__init__(workdir)
        self.app = None
        self.mon = None

    def version(self) -> str:
        import psycopg

        with psycopg.connect(ADMIN_DSN, connect_timeout=5) as c:
            pg = c.execute("SHOW server_version").fetchone()[0]
        return (
            f"procrastinate {metadata.version('procrastinate')}, "
            f"psycopg {metadata.version('psycopg')}, PostgreSQL {pg}"
        )

    def describe(self) -> str:
        return (
            f"PostgreSQL 127.0.0.1:5432, database `{DB}` recreated per start, "
            "2 x `procrastinate worker --concurrency 1`; batch = `Task.batch_defer`; "
            "no result store: status polled every 1 ms (one job) / 10 ms (many); "
            "CPU includes the PostgreSQL backends of that database"
        )

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as c:
            c.execute(sql)

    def start(self) -> None:
        import psycopg

        self._admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        self._admin(f"CREATE DATABASE {DB}")
        from bench.tasks import procrastinate_tasks

        self.app = procrastinate_tasks.app
        self.tasks = procrastinate_tasks.TASKS
        self.app.open()
        self.app.schema_manager.apply_schema()
        # the harness's own connection: status polls and the PG backend list
        self.mon = psycopg.connect(DSN, autocommit=True, connect_timeout=5)
        for k in range(2):
            self.spawn(
                f"procrastinate-worker-{k}",
                [
                    procs.venv_bin("procrastinate"),
                    "--log-level",
                    "warning",
                    "--app",
                    "bench.tasks.procrastinate_tasks.app",
                    "worker",
                    "--concurrency",
                    "1",
                    "--name",
                    f"corral-bench-{k}",
                ],
                env={"BENCH_PROCRASTINATE_DSN": DSN},
                stop_signal=signal.SIGTERM,  # graceful: finish running jobs
            )

        def workers_up() -> bool:
            return self.mon.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] >= 2

        procs.wait_until("procrastinate workers", workers_up, timeout=60, procs=self.procs)
        self.warm_up()

    def stop(self) -> None:
        super().stop()
        if self.mon is not None:
            self.mon.close()
            self.mon = None
        if self.app is not None:
            with contextlib.suppress(Exception):
                self.app.close()
        try:
            self._admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        except Exception as exc:
            print(f"warning: dropping {DB}: {exc}", file=sys.stderr)

    # handles are job ids
    def submit_one(self, i, kind):
        return self.tasks[kind].defer(x=i)

    def batch(self, kind, n):
        return list(self.tasks[kind].batch_defer(*({"x": i} for i in range(n))))

    def wait_one(self, handle, deadline):
        while True:
            status = self.app.job_manager.get_job_status(handle).value
            if status in DONE:
                break
            remaining(deadline)
            time.sleep(POLL_ONE_S)
        if status != "succeeded":
            raise RuntimeError(f"procrastinate job {handle}: {status}")

    def wait(self, handles, deadline):
        q = (
            "SELECT count(*) FILTER (WHERE status::text = ANY(%(done)s)),"
            " count(*) FILTER (WHERE status::text = ANY(%(bad)s))"
            " FROM procrastinate_jobs WHERE id = ANY(%(ids)s)"
        )
        ids = list(handles)
        params = {"done": list(DONE), "bad": [s for s in DONE if s != "succeeded"], "ids": ids}
        while True:
            done, bad = self.mon.execute(q, params).fetchone()
            if bad:
                raise RuntimeError(f"procrastinate: {bad} of {len(ids)} jobs did not succeed")
            if done >= len(ids):
                return
            remaining(deadline)
            self.check_alive()
            time.sleep(POLL_MANY_S)

    def cpu_externals(self):
        if self.mon is None:
            return []
        rows = self.mon.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (DB,)
        ).fetchall()
        return [r[0] for r in rows]

    def rss_mb(self):
        return {
            "server": procs.current_rss_mb(self.cpu_externals()),
            "worker": procs.peak_rss_mb([p.pid for p in self.procs]),
        }
