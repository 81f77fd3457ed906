"""Celery app of the benchmark: Redis broker and result backend (a dedicated DB)."""

import os

from celery import Celery

from bench.tasks import common

URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/13")

app = Celery("corral_bench", broker=URL, backend=URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    worker_hijack_root_logger=True,
)


@app.task(name="bench.noop")
def noop(x):
    return common.noop(x)


@app.task(name="bench.shell_true")
def shell_true(x):
    return common.shell_true(x)


TASKS = {"noop": noop, "shell": shell_true}
