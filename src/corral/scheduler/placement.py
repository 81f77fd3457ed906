"""Placement rules: which jobs a run's spec becomes, and why a queued job is not running yet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corral.domain.labels import matches, render
from corral.domain.models import Job, Worker
from corral.domain.runspec import JobSpec, RunSpec
from corral.domain.states import JobState
from corral.errors import InvalidRunSpec
from corral.scheduler.graph import effective_needs


@dataclass(frozen=True)
class Placement:
    """One job row to create: a spec, and for fanout=each copies, the worker it is pinned to."""

    spec: JobSpec
    position: int
    needs: tuple[str, ...]
    instance: str = ""
    worker_id: int | None = None


def eligible(spec: JobSpec, worker: Worker) -> bool:
    return matches(spec.selector, worker.labels) and spec.kind in worker.allow


def expand(run: RunSpec, workers: Sequence[Worker]) -> list[Placement]:
    """The run's jobs as rows; fanout=each becomes one copy per matching registered worker."""
    needs = effective_needs(run.jobs, run.schedule)
    out: list[Placement] = []
    problems: list[tuple[str, str]] = []
    for position, spec in enumerate(run.jobs):
        if spec.fanout == "one":
            out.append(Placement(spec, position, needs[spec.name]))
            continue
        targets = sorted((w for w in workers if eligible(spec, w)), key=lambda w: w.name)
        if not targets:
            problems.append(
                (
                    f"jobs.{spec.name}.fanout",
                    f'fanout = "each" but no registered worker matches {render(spec.selector)}'
                    f" and allows {spec.kind} jobs",
                )
            )
        out.extend(Placement(spec, position, needs[spec.name], w.name, w.id) for w in targets)
    if problems:
        raise InvalidRunSpec(problems)
    return out


def why_waiting(
    job: Job,
    others: Sequence[Job],
    workers: Sequence[Worker],
    now: float,
    offline_after: float,
) -> str:
    """One line saying what a blocked or queued job waits for."""
    if job.state is JobState.BLOCKED:
        waiting = [
            f"{o.label} ({o.state.value})"
            for o in others
            if o.name in job.needs and not o.state.ended
        ]
        return "waiting on needs: " + ", ".join(waiting) if waiting else "waiting on needs"
    if job.state is not JobState.QUEUED:
        return ""
    if job.not_before > now:
        return (
            f"retrying in {job.not_before - now:.0f}s ({job.reason})"
            if job.reason
            else (f"retrying in {job.not_before - now:.0f}s")
        )
    candidates = [
        w
        for w in workers
        if matches(job.selector, w.labels)
        and job.kind in w.allow
        and (not job.instance or w.name == job.instance)
    ]
    want = render(job.selector) if job.selector else "any labels"
    if job.instance:
        want = f"worker {job.instance}"
    if not candidates:
        return f"no registered worker matches {want} and allows {job.kind} jobs"
    online = [w for w in candidates if w.state(now, offline_after) != "offline"]
    if not online:
        names = ", ".join(w.name for w in candidates[:5])
        return f"every matching worker is offline ({names})"
    ready = [w for w in online if not w.draining]
    if not ready:
        return f"every matching worker is draining ({', '.join(w.name for w in online[:5])})"
    if all(w.busy >= w.slots for w in ready):
        slots = sum(w.slots for w in ready)
        return f"all {len(ready)} matching workers are busy ({slots} slots in use)"
    return "waiting for a matching worker to ask for work"
