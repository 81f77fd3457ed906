"""The benchmark task bodies as corral tasks (`corral serve --tasks bench/tasks`)."""

import subprocess

import corral


@corral.task
def noop(x):
    return x


@corral.task
def shell_true(x):
    subprocess.run(["true"], check=True)
    return x
