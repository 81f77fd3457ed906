"""What a run's jobs published for later jobs (`KEY=VALUE` lines in `$CORRAL_OUTPUT`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from corral.api.deps import coordinator, principal
from corral.auth import Principal
from corral.store.shared import Shared

router = APIRouter(prefix="/api/v1")
Who = Annotated[Principal, Depends(principal)]


@router.get("/runs/{ref}/shared")
def get_shared(request: Request, who: Who, ref: str) -> dict[str, Any]:
    """Job label → the key/values it published (passed jobs only)."""
    coord = coordinator(request)
    run = coord.run(who, ref)  # 404 for runs the caller may not see
    return {"run": run.id, "shared": Shared(coord.store.db).of_run(run.id)}
