"""The HTTP floor's server: an ASGI app that reads a POST's body and answers 201 with a small
JSON body, as a submit does, and nothing else (no parsing, no store, no job)."""

from __future__ import annotations

from typing import Any

BODY = b'{"id":1,"state":"queued"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 201, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
