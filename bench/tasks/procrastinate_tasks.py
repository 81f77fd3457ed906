"""Procrastinate app of the benchmark (its own PostgreSQL database)."""

import os

from procrastinate import App, PsycopgConnector

from bench.tasks import common

DSN = os.environ.get(
    "BENCH_PROCRASTINATE_DSN", "postgresql://postgres@127.0.0.1:5432/corral_bench_procrastinate"
)

app = App(connector=PsycopgConnector(conninfo=DSN))


@app.task(name="noop")
def noop(x):
    return common.noop(x)


@app.task(name="shell_true")
def shell_true(x):
    return common.shell_true(x)


TASKS = {"noop": noop, "shell": shell_true}
