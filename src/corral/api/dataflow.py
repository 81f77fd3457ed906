"""What jobs produced, over HTTP: the outputs of a job's attempts (name, sha256, size)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from corral.api.deps import answer, coordinator, principal
from corral.auth import Principal
from corral.errors import NotFound
from corral.store.pages import Output

router = APIRouter(prefix="/api/v1")
Who = Annotated[Principal, Depends(principal)]


def output_json(o: Output) -> dict[str, Any]:
    return {"name": o.name, "sha256": o.sha256, "size": o.size}


def add_outputs(job: dict[str, Any], outputs: Sequence[Output]) -> dict[str, Any]:
    """A job's JSON with what each attempt produced, and the latest attempt's as the job's."""
    by_number: dict[int, list[dict[str, Any]]] = {}
    for o in outputs:
        by_number.setdefault(o.attempt, []).append(output_json(o))
    for a in job.get("attempt_list", []):
        a["outputs"] = by_number.get(a["number"], [])
    attempts = job.get("attempt_list") or []
    job["outputs"] = attempts[-1]["outputs"] if attempts else []
    return job


@router.get("/runs/{ref}/results")
def run_results(request: Request, who: Who, ref: str) -> Response:
    """Every job's state, reason and result (a task's return value), in spec order."""
    run, found = coordinator(request).results(who, ref)
    return answer({"run": run.id, "state": run.state.value, "jobs": results_json(found)})


def results_json(found: list[tuple[str, str, str, Any]]) -> list[dict[str, Any]]:
    return [
        {"label": label, "state": state, "reason": reason, "result": result}
        for label, state, reason, result in found
    ]


@router.get("/runs/{ref}/jobs/{label}/outputs")
def job_outputs(
    request: Request, who: Who, ref: str, label: str, attempt: int | None = None
) -> Response:
    """The outputs of a job's latest attempt (or of attempt number `attempt`)."""
    coord = coordinator(request)
    _, view = coord.job(who, ref, label)
    numbers = [a.number for a in view.attempts]
    if attempt is None:
        attempt = numbers[-1] if numbers else None
    elif attempt not in numbers:
        raise NotFound(f"job {label!r} has no attempt {attempt}")
    found = coord.outputs(who, ref, label)
    chosen = [output_json(o) for o in found if o.attempt == attempt]
    return answer({"attempt": attempt, "outputs": chosen})
