"""Tokens over HTTP (admin only), and who the caller is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from corral.api.deps import coordinator, principal
from corral.api.schemas import TokenBody, token_json
from corral.auth import Principal

router = APIRouter(prefix="/api/v1")
Who = Annotated[Principal, Depends(principal)]


@router.get("/whoami")
def whoami(who: Who) -> dict[str, Any]:
    return {"kind": who.kind, "name": who.name, "project": who.project, "worker": who.worker_id}


@router.post("/tokens", status_code=201)
def create_token(request: Request, who: Who, body: TokenBody) -> dict[str, Any]:
    """A new token; its secret is in this answer and nowhere else, ever."""
    token, secret = coordinator(request).create_token(who, body.kind, body.project, body.name)
    return {**token_json(token), "token": secret}


@router.get("/tokens")
def list_tokens(request: Request, who: Who) -> dict[str, Any]:
    return {"tokens": [token_json(t) for t in coordinator(request).list_tokens(who)]}


@router.delete("/tokens/{token_id}")
def revoke_token(request: Request, who: Who, token_id: int) -> dict[str, Any]:
    coordinator(request).revoke_token(who, token_id)
    return {"ok": True}
