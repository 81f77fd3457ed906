"""RQ: Redis (DB 14), two ``rq worker`` processes of class SimpleWorker (no fork per job)."""

from __future__ import annotations

import signal
from importlib import metadata

from bench import procs
from bench.systems.base import System, check_value, remaining
from bench.tasks import common

REDIS_DB = 14
URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
QUEUE = "corral-bench"
WORKER_CLASS = "rq.worker.SimpleWorker"
#: the longest single blocking read we ask Redis for (below the socket timeout)
WAIT_SLICE_S = 20


class RQSystem(System):
    name = "rq"
    has_batch = True  # Queue.enqueue_many

    def __init__(self, workdir):
        super().__init__(workdir)
        self.redis_pid = procs.redis_pid()

    def version(self) -> str:
        return f"rq {metadata.version('rq')}, redis-py {metadata.version('redis')}"

    def describe(self) -> str:
        return (
            f"Redis (127.0.0.1:6379 DB {REDIS_DB}), 2 x `rq worker -w {WORKER_CLASS}`; "
            "batch = `Queue.enqueue_many`; wait = `Job.latest_result(timeout)` per job; "
            "CPU includes redis-server"
        )

    def start(self) -> None:
        import redis
        from rq import Queue, Worker

        self.conn = redis.Redis.from_url(URL, socket_timeout=WAIT_SLICE_S + 15)
        self.conn.flushdb()
        self.queue = Queue(QUEUE, connection=self.conn)
        for k in range(2):
            self.spawn(
                f"rq-worker-{k}",
                [
                    procs.venv_bin("rq"),
                    "worker",
                    "-u",
                    URL,
                    "-w",
                    WORKER_CLASS,
                    "--logging_level",
                    "WARNING",
                    "-n",
                    f"corral-bench-{k}",
                    QUEUE,
                ],
                stop_signal=signal.SIGTERM,  # warm shutdown
            )
        procs.wait_until(
            "rq workers registered",
            lambda: Worker.count(connection=self.conn, queue=self.queue) >= 2,
            timeout=60,
            procs=self.procs,
        )
        self.warm_up()

    def stop(self) -> None:
        super().stop()
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()

    # handles are (i, Job)
    def submit_one(self, i, kind):
        return (i, self.queue.enqueue(common.BODIES[kind], i))

    def batch(self, kind, n):
        from rq import Queue

        func = common.BODIES[kind]
        jobs = self.queue.enqueue_many([Queue.prepare_data(func, (i,)) for i in range(n)])
        return list(enumerate(jobs))

    def wait_one(self, handle, deadline):
        from rq.results import Result

        i, job = handle
        while True:
            res = job.latest_result(timeout=max(1, min(WAIT_SLICE_S, int(remaining(deadline)))))
            if res is not None:
                break
            self.check_alive()
        if res.type != Result.Type.SUCCESSFUL:
            raise RuntimeError(f"rq job {job.id}: {res.type.name}: {res.exc_string}")
        check_value(res.return_value, i, "rq")

    def cpu_externals(self):
        return [self.redis_pid] if self.redis_pid else []

    def rss_mb(self):
        return {
            "server": procs.current_rss_mb(self.cpu_externals()),
            "worker": procs.peak_rss_mb([p.pid for p in self.procs]),
        }
