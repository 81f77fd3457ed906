"""A cap on request bodies, enforced before they are buffered (413 early)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_body = max_body
        self.exempt = exempt  # path prefixes whose routes stream bodies under caps of their own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        if declared_too_large(scope, self.max_body):
            await too_large(send, self.max_body)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped(receive, self.max_body), tracked)
        except BodyTooLarge:
            if not started:
                await too_large(send, self.max_body)


def declared_too_large(scope: Scope, max_body: int) -> bool:
    """Whether the request's Content-Length is over the cap (refused before any is read)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value) > max_body
            except ValueError:
                return False
    return False


def capped(receive: Receive, max_body: int) -> Receive:
    """`receive` that raises BodyTooLarge once the body read so far is over the cap."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_body:
                raise BodyTooLarge()
        return message

    return counted


async def too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {"error": {"type": "PayloadTooLarge", "message": f"request body over {limit} bytes"}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
