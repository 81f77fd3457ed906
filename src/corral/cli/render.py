"""How the CLI shows things: state colours, tables, durations, errors."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from corral.domain.durations import format_duration

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

COLORS = {
    "blocked": "dim",
    "queued": "cyan",
    "leased": "blue",
    "running": "bold blue",
    "passed": "green",
    "failed": "bold red",
    "timed_out": "red",
    "canceled": "yellow",
    "lost": "magenta",
    "skipped": "dim",
    "online": "green",
    "draining": "yellow",
    "offline": "red",
}


def state(value: str) -> Text:
    return Text(value, style=COLORS.get(value, ""))


def span(start: float | None, end: float | None) -> str:
    if start is None:
        return "-"
    return format_duration((end or time.time()) - start)


def ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    return format_duration(max(0.0, time.time() - ts)) + " ago"


def runs_table(runs: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("RUN", "NAME", "PROJECT", "STATE", "JOBS", "DURATION", "SUBMITTED", "BY"):
        table.add_column(col)
    for r in runs:
        counts = r.get("counts", {})
        jobs = Text()
        for name in (
            "passed",
            "failed",
            "timed_out",
            "lost",
            "canceled",
            "running",
            "leased",
            "queued",
            "blocked",
            "skipped",
        ):
            if counts.get(name):
                if jobs:
                    jobs.append(" ")
                jobs.append(f"{counts[name]} {name}", style=COLORS.get(name, ""))
        table.add_row(
            str(r["id"]),
            r["name"],
            r["project"],
            state(r["state"]),
            jobs,
            span(r.get("started_at"), r.get("ended_at")),
            ago(r.get("created_at")),
            r.get("submitted_by", ""),
        )
    return table


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("JOB", "STATE", "WORKER", "TRIES", "DURATION", "DETAIL"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        detail = j.get("waiting") or j.get("reason") or ""
        table.add_row(
            j["label"],
            state(j["state"]),
            j.get("worker") or "-",
            str(j.get("attempts", 0)),
            span(j.get("started_at"), j.get("ended_at")),
            Text(detail, style="red" if j["state"] in ("failed", "timed_out", "lost") else "dim"),
        )
    return table


def workers_table(workers: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("WORKER", "STATE", "LABELS", "SLOTS", "BUSY", "ALLOW", "LAST SEEN"):
        table.add_column(col)
    for w in workers:
        table.add_row(
            w["name"],
            state(w["state"]),
            w.get("labels_text", ""),
            str(w["slots"]),
            str(w["busy"]),
            ",".join(w.get("allow", [])),
            ago(w.get("last_seen")),
        )
    return table


def error(message: str) -> None:
    err.print(Text("error: ", style="bold red") + Text(message))


def isatty() -> bool:
    return sys.stdout.isatty()
