"""Shaping records for the dashboard's templates: durations, depths, log lines, the matrix."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from corral.dashboard.ansi import Renderer, plain
from corral.domain.models import Job, LogChunk, Run

# The order people read a run's states in: what is wrong first, then what is going on.
JOB_STATES = (
    "failed",
    "timed_out",
    "lost",
    "canceled",
    "running",
    "leased",
    "queued",
    "blocked",
    "skipped",
    "passed",
)
RUN_STATES = ("queued", "running", "passed", "failed", "canceled")
# A line that most likely tells why a job failed.
ERROR_RE = re.compile(
    r"\b(error|errors|failed|failure|fatal|panic|exception|traceback)\b|^E\s", re.IGNORECASE
)


def seconds(value: float) -> str:
    """A length of time, short: 0.4s, 12s, 3m 04s, 2h 05m."""
    if value < 10:
        return f"{value:.1f}s"
    if value < 60:
        return f"{value:.0f}s"
    if value < 3600:
        return f"{int(value // 60)}m {int(value % 60):02d}s"
    return f"{int(value // 3600)}h {int(value % 3600 // 60):02d}m"


def duration(start: float | None, end: float | None, now: float | None = None) -> str:
    """How long something ran (so far, while it runs); '' if it never started."""
    if start is None:
        return ""
    stop = end if end is not None else (now if now is not None else time.time())
    return seconds(max(0.0, stop - start))


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return ""
    gone = max(0.0, (now if now is not None else time.time()) - ts)
    return f"{seconds(gone)} ago"


def clock(ts: float | None) -> str:
    """A moment in UTC, as people write it."""
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def ordered_counts(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """A run's jobs by state, in reading order; states with no jobs left out."""
    known = [(s, counts[s]) for s in JOB_STATES if counts.get(s)]
    other = [(s, n) for s, n in sorted(counts.items()) if s not in JOB_STATES and n]
    return known + other


def depths(jobs: Sequence[Job]) -> dict[str, int]:
    """Job name → its level in the graph (0 for jobs that need nothing): the longest chain of
    needs above it. Names outside the run count as level 0."""
    needs = {j.name: j.needs for j in jobs}
    level: dict[str, int] = {}

    def visit(name: str, seen: frozenset[str]) -> int:
        if name in level:
            return level[name]
        if name in seen or name not in needs:
            return 0  # a cycle cannot be submitted; stay safe anyway
        depth = 1 + max((visit(n, seen | {name}) for n in needs[name]), default=-1)
        level[name] = depth
        return depth

    for j in jobs:
        visit(j.name, frozenset())
    return level


@dataclass(frozen=True)
class Line:
    """One rendered line of a job's log."""

    seq: int
    stream: str
    html: str  # escaped text and colour spans only
    first_error: bool = False


@dataclass
class LogView:
    """Renders log chunks to lines; keeps colours per stream and finds the first error line."""

    renderers: dict[str, Renderer] = field(default_factory=dict)
    found_error: bool = False

    def feed(self, chunks: Iterable[LogChunk]) -> list[Line]:
        out: list[Line] = []
        for c in chunks:
            renderer = self.renderers.setdefault(c.stream, Renderer())
            text = c.data[:-1] if c.data.endswith("\n") else c.data
            for raw in text.split("\n"):
                first = False
                if not self.found_error and c.stream != "corral" and ERROR_RE.search(plain(raw)):
                    first = self.found_error = True
                out.append(Line(c.seq, c.stream, renderer.line(raw), first))
        return out


def matrix_columns(rows: Sequence[tuple[Run, Sequence[Job]]]) -> list[str]:
    """Job labels across the matrix: in spec order, newest run first, then any older extras."""
    seen: dict[str, None] = {}
    for _, jobs in rows:
        for j in jobs:
            seen.setdefault(j.label, None)
    return list(seen)


def matrix_cells(jobs: Sequence[Job]) -> dict[str, Job]:
    return {j.label: j for j in jobs}


def payload_inputs(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A job's inputs as (name under inputs/, where it comes from)."""
    out = []
    for i in payload.get("inputs") or []:
        if not isinstance(i, Mapping):
            continue
        source = f"sha256:{i['sha256']}" if i.get("sha256") else f"{i.get('job')}:{i.get('output')}"
        out.append((str(i.get("name", "")), source))
    return out


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def resources(values: Mapping[str, float]) -> list[tuple[str, str]]:
    """An attempt's resource use, named and formatted for people."""
    out = []
    for key, value in sorted(values.items()):
        if key.endswith("_s"):
            out.append((key[:-2].replace("_", " "), seconds(float(value))))
        elif key.endswith(("_bytes", "_kib", "_kb")):
            factor = 1 if key.endswith("_bytes") else 1024
            out.append((key.rsplit("_", 1)[0].replace("_", " "), size(int(value * factor))))
        else:
            out.append((key.replace("_", " "), f"{value:g}"))
    return out
