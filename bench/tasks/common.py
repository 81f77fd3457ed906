"""The task bodies every system runs (BENCH.md): ``noop`` and ``shell_true``."""

import subprocess


def noop(x):
    return x


def shell_true(x):
    subprocess.run(["true"], check=True)
    return x


BODIES = {"noop": noop, "shell": shell_true}
