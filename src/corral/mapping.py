"""`Client.map`: one run with a task job per item, waited for, results in the items' order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from corral.errors import MapFailed

if TYPE_CHECKING:
    from corral.client import Client


def job_name(index: int, width: int) -> str:
    return f"item-{index:0{width}d}"


def map_spec(
    task: str,
    items: Iterable[Any],
    *,
    arg: str | None = None,
    on: Mapping[str, str] | None = None,
    timeout: float | str | None = None,
    retries: int | None = None,
    name: str | None = None,
) -> tuple[dict[str, Any], list[Any]]:
    """The run spec (JSON form) of a map, and the items in order."""
    listed = list(items)
    width = len(str(max(len(listed) - 1, 0)))
    jobs: dict[str, Any] = {}
    for i, item in enumerate(listed):
        if isinstance(item, Mapping):
            args = dict(item)
        elif arg is not None:
            args = {arg: item}
        else:
            raise TypeError(
                f"item {i} is a {type(item).__name__}, not a mapping of keyword arguments: "
                f"pass arg='NAME' to give each item to the task as that argument"
            )
        job: dict[str, Any] = {"task": task, "args": args}
        if on is not None:
            job["on"] = dict(on)
        if timeout is not None:
            job["timeout"] = timeout
        if retries is not None:
            job["retries"] = retries
        jobs[job_name(i, width)] = job
    return {"name": name or f"map-{task}", "jobs": jobs}, listed


def run_map(client: Client, task: str, items: Iterable[Any], **options: Any) -> list[Any]:
    progress = bool(options.pop("progress", True))
    spec, listed = map_spec(task, items, **options)
    if not listed:
        return []
    run = client.submit(spec).wait(progress=progress)
    found = client.results(run.id)
    by_label = {j["label"]: j for j in found["jobs"]}
    width = len(str(len(listed) - 1))
    results: list[Any] = []
    failures: list[tuple[int, Any, str]] = []
    for i, item in enumerate(listed):
        job = by_label.get(job_name(i, width), {})
        if job.get("state") == "passed":
            results.append(job.get("result"))
        else:
            results.append(None)
            why = job.get("reason") or job.get("state") or "no such job"
            failures.append((i, item, f"{job.get('state', 'missing')}: {why}"))
    if failures:
        raise MapFailed(run.id, failures, results)
    return results
