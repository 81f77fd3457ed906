"""One socket write per response: uvicorn's HTTP protocol with its writes gathered.

uvicorn writes a response's head when the app starts it and its body when the app sends it:
two writes, so two system calls, two TCP segments on the wire and two wake-ups of the client,
for every small JSON answer. With uvloop each write goes to the socket at once, holding the
interpreter lock through the kernel's loopback path. The transport below keeps what is written
during one turn of the event loop and hands it to the socket as one write when that turn ends,
before the loop waits on the network again: nothing waits longer than the code already running.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any


class GatheredWrites:
    """A transport whose writes within one turn of the loop reach the socket as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()  # what was written goes out before the connection closes
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def http_protocol() -> Any:
    """What to give uvicorn as `http=`: its httptools protocol writing through
    `GatheredWrites`, or uvicorn's own choice where httptools is not installed (it is optional
    on platforms where it does not build)."""
    if importlib.util.find_spec("httptools") is None:
        return "auto"
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GatheringHttpTools(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            gathered: Any = GatheredWrites(transport, asyncio.get_running_loop())
            super().connection_made(gathered)

    return GatheringHttpTools
