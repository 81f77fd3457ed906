"""Following a job's log and a run's progress live."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.live import Live

from corral.cli.render import jobs_table, out
from corral.client import Client

ENDED = ("passed", "failed", "canceled")


def stream_log(
    client: Client, run: int | str, label: str, *, follow: bool, attempt: int | None = None
) -> None:
    """Print a job's log to stdout/stderr (by stream); with `follow`, until the job ends.

    Following moves on to the next attempt when a job is retried.
    """
    current, after = attempt, -1
    while True:
        answer = client.log(run, label, attempt=current, after=after, wait=20.0 if follow else 0.0)
        for chunk in answer["chunks"]:
            target = sys.stderr if chunk["stream"] == "stderr" else sys.stdout
            target.write(chunk["data"])
            target.flush()
        after = answer["next"]
        att = answer.get("attempt")
        if current is None and att is not None:
            current = att["number"]
        if answer["chunks"] and not answer["ended"]:
            continue
        if not follow:
            return
        if not answer["ended"]:
            continue
        if attempt is not None:
            return
        job = client.job(run, label)
        attempts = job["attempt_list"]
        latest = attempts[-1]["number"] if attempts else None
        if latest is not None and latest != current:
            # a newer attempt (even one that has already ended): print it too, saying why
            left = next((a for a in attempts if a["number"] == current), None)
            why = (left and left["reason"]) or job["reason"] or "retrying"
            sys.stderr.write(f"[corral: {why}; attempt {latest}]\n")
            current, after = latest, -1
        elif job["state"] in ("passed", "failed", "timed_out", "canceled", "lost", "skipped"):
            return
        else:
            time.sleep(0.2)


def watch_run(client: Client, run_id: int, *, live: bool) -> dict[str, Any]:
    """Show the run's jobs updating in place until it ends; returns the final run."""
    if not live:
        return client.wait(run_id)
    with Live(console=out, refresh_per_second=4, transient=False) as view:
        while True:
            run = client.run(run_id)
            view.update(jobs_table(run["jobs"]))
            if run["state"] in ENDED:
                return run
            client.wait(run_id, timeout=1.0)
