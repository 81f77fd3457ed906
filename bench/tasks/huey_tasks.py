"""Huey of the benchmark: SqliteHuey on a file given by BENCH_HUEY_DB.

``build(path)`` makes an instance with the two tasks registered; the consumer
imports the module-level ``huey`` (built from the environment at import).
"""

import os

from huey import SqliteHuey

from bench.tasks import common


def build(filename):
    huey = SqliteHuey("corral-bench", filename=filename)
    tasks = {
        "noop": huey.task(name="noop")(common.noop),
        "shell": huey.task(name="shell_true")(common.shell_true),
    }
    return huey, tasks


huey, TASKS = build(os.environ.get("BENCH_HUEY_DB", ":memory:"))
