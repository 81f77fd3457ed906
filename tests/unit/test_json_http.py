"""The standard-library JSON path of the client: bodies, queries, kept-alive connections."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from corral import json_http
from corral.json_http import ConnectionFailed, JsonConnections


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    peers: list[int] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        _Echo.peers.append(self.client_address[1])
        out = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("authorization"),
                "type": self.headers.get("content-type"),
                "body": json.loads(body) if body else None,
            }
        ).encode()
        self.send_response(418 if self.path.endswith("/teapot") else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Echo.peers = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/base"
    httpd.shutdown()
    httpd.server_close()


def _conns(url: str) -> JsonConnections:
    return JsonConnections(url, True, {"authorization": "Bearer t0k"}, 5.0)


def test_json_body_query_and_headers(server: str) -> None:
    c = _conns(server)
    reply = c.request(
        "POST",
        "/api/v1/runs",
        json_body={"name": "é", "jobs": {}},
        params={"project": "p", "failed": True, "none": None, "tags": ["a", "b"]},
    )
    assert reply.status_code == 200
    got = reply.json()
    assert got["method"] == "POST"
    # the URL's path is a prefix; booleans and lists are written as httpx writes them
    assert got["path"] == "/base/api/v1/runs?project=p&failed=true&none=&tags=a&tags=b"
    assert got["auth"] == "Bearer t0k"
    assert got["type"] == "application/json"
    assert got["body"] == {"name": "é", "jobs": {}}
    c.close()


def test_an_error_status_is_a_reply_not_an_exception(server: str) -> None:
    c = _conns(server)
    reply = c.request("GET", "/teapot")
    c.close()
    assert reply.status_code == 418
    assert reply.reason_phrase == "I'm a Teapot"
    assert json.loads(reply.text)["path"] == "/base/teapot"


def test_one_connection_carries_a_thread_s_requests(server: str) -> None:
    c = _conns(server)
    for _ in range(5):
        c.request("GET", "/x")
    assert len(set(_Echo.peers)) == 1
    c.close()


def test_an_idle_connection_is_not_trusted_again(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(json_http, "REUSE_IDLE", 0.0)
    c = _conns(server)
    c.request("GET", "/x")
    c.request("GET", "/x")
    assert len(set(_Echo.peers)) == 2
    c.close()


def test_threads_get_their_own_connections(server: str) -> None:
    c = _conns(server)
    threads = [threading.Thread(target=c.request, args=("GET", "/x")) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(_Echo.peers)) == 3
    c.close()


def test_nobody_listening_is_a_connection_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(ConnectionFailed, match="refused"):
            _conns(f"http://127.0.0.1:{port}").request("GET", "/x")


def test_a_silent_server_times_out() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)  # accepts the connection, never answers
        c = _conns(f"http://127.0.0.1:{s.getsockname()[1]}")
        with pytest.raises(ConnectionFailed, match="timed out"):
            c.request("GET", "/x", timeout=0.2)
        c.close()


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        _conns("ftp://example.org/")


def test_a_client_makes_its_httpx_client_only_when_a_stream_needs_it(server: str) -> None:
    from corral.client import Http

    http = Http(server, "t0k")
    assert http.request("GET", "/x")["auth"] == "Bearer t0k"  # the light path
    assert http._http is None  # no TLS contexts made for a plain JSON request
    http.set_token("n3w")
    assert http.http.headers["authorization"] == "Bearer n3w"  # made now, with the new token
    assert http.http is http.http
    http.close()
    assert http._http is None
