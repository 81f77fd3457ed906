"""The fleet's hosts over HTTP: list them with reachability, check them (connect and time)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from corral.api.deps import principal
from corral.auth import Principal
from corral.errors import Forbidden
from corral.fleet.hosts import Fleet, host_json

router = APIRouter(prefix="/api/v1")
Who = Annotated[Principal, Depends(principal)]


def fleet_of(request: Request) -> Fleet | None:
    """The server's fleet, or None when its inventory lists no host."""
    fleet: Fleet | None = getattr(request.app.state, "fleet", None)
    return fleet


@router.get("/hosts")
def list_hosts(request: Request, who: Who) -> dict[str, Any]:
    """The inventory's sites: address, roles, and whether the coordinator holds a connection."""
    if who.kind not in ("admin", "submitter", "reader"):
        raise Forbidden(f"a {who.kind} token cannot list hosts")
    fleet = fleet_of(request)
    return {"hosts": [host_json(h, s) for h, s in fleet.states()] if fleet else []}


@router.post("/hosts/check")
def check_hosts(request: Request, who: Who) -> dict[str, Any]:
    """Connect to every host now and report its Python and the latency of a round trip."""
    who.require_admin()
    fleet = fleet_of(request)
    return {"hosts": [host_json(h, s) for h, s in fleet.check()] if fleet else []}
