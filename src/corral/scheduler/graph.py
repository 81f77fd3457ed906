"""The `needs` graph of a run: checked at submit, and readiness decided each time a job ends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from corral.domain.runspec import JobSpec
from corral.domain.states import FAILURES, Event, JobState


def effective_needs(jobs: Sequence[JobSpec], schedule: str) -> dict[str, tuple[str, ...]]:
    """Each job's needs, with the order a schedule adds (sequential: the job before, in file order)."""
    out: dict[str, tuple[str, ...]] = {}
    previous: str | None = None
    for job in jobs:
        needs = job.needs
        if schedule == "sequential" and previous is not None and previous not in needs:
            needs = (previous, *needs)
        out[job.name] = needs
        previous = job.name
    return out


def check_graph(jobs: Sequence[JobSpec], schedule: str = "parallel") -> list[tuple[str, str]]:
    """Problems with the needs graph: unknown names, a job needing itself, cycles."""
    problems: list[tuple[str, str]] = []
    names = {j.name for j in jobs}
    needs = effective_needs(jobs, schedule)
    for job in jobs:
        for need in job.needs:
            if need == job.name:
                problems.append((f"jobs.{job.name}.needs", "a job cannot need itself"))
            elif need not in names:
                problems.append((f"jobs.{job.name}.needs", f"unknown job {need!r}"))
    if problems:
        return problems
    cycle = find_cycle(needs)
    if cycle:
        problems.append(
            (f"jobs.{cycle[0]}.needs", "needs form a cycle: " + " → ".join([*cycle, cycle[0]]))
        )
    return problems


def find_cycle(needs: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as a list of names, or None; iterative so deep chains cannot overflow the stack."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(needs, white)
    for root in needs:
        if color[root] != white:
            continue
        stack: list[tuple[str, list[str]]] = [(root, list(needs[root]))]
        color[root] = grey
        path = [root]
        while stack:
            node, todo = stack[-1]
            if not todo:
                color[node] = black
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            if color.get(nxt, black) == grey:
                return path[path.index(nxt) :]
            if color.get(nxt) == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append((nxt, list(needs[nxt])))
    return None


@dataclass(frozen=True)
class Node:
    """What readiness needs to know of one job instance."""

    id: int
    name: str
    state: JobState
    needs: tuple[str, ...]
    when: str


def readiness(nodes: Sequence[Node]) -> list[tuple[int, Event]]:
    """For each blocked job whose needs have all ended: READY or SKIP, by its `when`.

    A need names every instance of that job (fanout copies). A skipped failure hook counts
    as fine, so a hook that did not fire does not block what comes after it; a job skipped
    because its own needs failed passes that failure on, so a failure stops the whole chain
    after it (and fires failure hooks further down), not just the next job.
    """
    by_name: dict[str, list[Node]] = {}
    for n in nodes:
        by_name.setdefault(n.name, []).append(n)
    decisions: list[tuple[int, Event]] = []
    for n in nodes:
        if n.state is not JobState.BLOCKED:
            continue
        needs = [m for need in n.needs for m in by_name.get(need, [])]
        if not all(m.state.ended for m in needs):
            continue
        failed = any(_failed(m) for m in needs)
        if n.when == "always":
            fire = True
        elif n.when == "failure":
            fire = failed
        else:
            fire = not failed
        decisions.append((n.id, Event.READY if fire else Event.SKIP))
    return decisions


def _failed(need: Node) -> bool:
    """Whether a need that ended counts as a failure for the `when` of the jobs after it."""
    if need.state in FAILURES or need.state is JobState.CANCELED:
        return True
    # skipped with when=success means its own needs failed; a skipped hook means they did not
    return need.state is JobState.SKIPPED and need.when == "success"


def downstream(nodes: Sequence[Node], roots: Iterable[str]) -> set[str]:
    """Names of `roots` and every job that needs them, directly or not (what a rerun resets)."""
    dependents: dict[str, set[str]] = {}
    for n in nodes:
        for need in n.needs:
            dependents.setdefault(need, set()).add(n.name)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(dependents.get(name, ()))
    return seen
