"""Registered tasks over HTTP: what the server offers, and task sources by hash for workers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from corral.api.deps import coordinator, principal
from corral.auth import Principal
from corral.errors import Forbidden

router = APIRouter(prefix="/api/v1")
Who = Annotated[Principal, Depends(principal)]


@router.get("/tasks")
def list_tasks(request: Request, who: Who) -> dict[str, Any]:
    """The tasks the server's task files define, and the problems that keep others out."""
    if who.kind not in ("admin", "submitter", "reader"):
        raise Forbidden(f"a {who.kind} token cannot list tasks")
    registry = coordinator(request).registry
    tasks = [
        {
            "name": t.name,
            "module": t.module,
            "function": t.function,
            "sha256": t.sha256,
            "on": dict(t.selector),
            "timeout": t.timeout,
            "retries": t.retries,
        }
        for t in registry.tasks()
    ]
    # paths of the server's files are for admins only
    problems = registry.problems() if who.is_admin else []
    return {"tasks": tasks, "problems": problems}


@router.get("/tasks/sources/{sha256}")
def task_source(request: Request, who: Who, sha256: str) -> Response:
    """A task file's source by its sha256 (worker or admin); 404 for a hash not held."""
    source = coordinator(request).task_source(who, sha256)
    return Response(
        source,
        media_type="text/x-python; charset=utf-8",
        headers={"cache-control": "private, max-age=31536000, immutable"},
    )
