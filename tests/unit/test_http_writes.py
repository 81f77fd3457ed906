"""One socket write per response: uvicorn's own protocol code, driven with a recording transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.http_writes import GatheredWrites, http_protocol

httptools_impl = pytest.importorskip("uvicorn.protocols.http.httptools_impl")
from uvicorn.config import Config  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402


class Recorder(asyncio.Transport):
    """What reached the socket, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def small(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"8")]}
    )
    await send({"type": "http.response.body", "body": b'{"id":1}'})


async def streamed(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (b"one\n", b"two\n"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await asyncio.sleep(0.01)  # the next part comes in a later turn of the loop
    await send({"type": "http.response.body", "body": b""})


def serve(protocol: Any, app: Any, request: bytes) -> Recorder:
    async def main() -> Recorder:
        config = Config(app=app, log_level="warning")
        config.load()
        proto = protocol(config=config, server_state=ServerState(), app_state={})
        transport = Recorder()
        proto.connection_made(transport)
        proto.data_received(request)
        for _ in range(50):
            await asyncio.sleep(0.002)
        proto.connection_lost(None)
        return transport

    return asyncio.run(main())


GET = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


def test_a_response_reaches_the_socket_in_one_write() -> None:
    sent = serve(http_protocol(), small, GET)
    assert len(sent.writes) == 1
    assert sent.writes[0].startswith(b"HTTP/1.1 201 ")
    assert sent.writes[0].endswith(b'\r\n\r\n{"id":1}')


def test_uvicorns_protocol_alone_writes_a_response_twice() -> None:
    # what the gathering is for: if uvicorn ever writes once by itself, it can go
    sent = serve(httptools_impl.HttpToolsProtocol, small, GET)
    assert len(sent.writes) == 2


def test_a_closing_connection_gets_its_response_before_it_closes() -> None:
    sent = serve(http_protocol(), small, b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert sent.events[:2] == ["write", "close"]
    assert sent.writes[0].endswith(b'{"id":1}')


def test_parts_sent_in_later_turns_of_the_loop_go_out_as_they_come() -> None:
    sent = serve(http_protocol(), streamed, GET)
    body = b"".join(sent.writes)
    assert body.startswith(b"HTTP/1.1 200 ")
    assert b"one\n" in body and b"two\n" in body
    # the head with the first part, then the second part, then the chunked ending
    assert len(sent.writes) == 3


def test_gathered_writes_copy_what_they_are_given() -> None:
    async def main() -> Recorder:
        transport = Recorder()
        gathered = GatheredWrites(transport, asyncio.get_running_loop())
        buffer = bytearray(b"abc")
        gathered.write(buffer)
        buffer[:] = b"xyz"  # a caller may reuse its buffer once write returns
        gathered.write(memoryview(b"def"))
        assert transport.writes == [] and gathered.get_write_buffer_size() == 6
        await asyncio.sleep(0)
        return transport

    assert asyncio.run(main()).writes == [b"abcdef"]
