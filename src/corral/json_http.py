"""Small JSON requests on kept-alive standard-library connections, one per thread.

httpx spends about 1.5 ms of CPU on a small request on this kind of machine, against 0.3 ms
for `http.client`; the CLI, workers and `corral.Client` send mostly small JSON requests
(submit, wait, lease, report), so those go this way. Streams of object bytes, and callers that
bring their own httpx transport (tests), keep httpx.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

# uvicorn closes a connection idle for 5 s; one idle this long is not trusted with a request
# (a request on a connection the server is closing might or might not have been handled)
REUSE_IDLE = 2.0
CONNECT_TIMEOUT = 5.0


class ConnectionFailed(Exception):
    """No answer: refused, reset, timed out; the message says which."""


class Reply:
    """The little of an HTTP response that the client reads."""

    def __init__(self, status: int, reason: str, content: bytes) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class JsonConnections:
    def __init__(
        self,
        url: str,
        verify: ssl.SSLContext | bool,
        headers: dict[str, str],
        timeout: float,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.context: ssl.SSLContext | None = None
        if self.https:
            self.context = (
                verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
            )
            if verify is False:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self.headers = headers
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[http.client.HTTPConnection] = []

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it has carried a request before."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        used_at: float = getattr(self._local, "used_at", 0.0)
        if conn is not None and time.monotonic() - used_at < REUSE_IDLE:
            return conn, True
        if conn is not None:
            self._drop(conn)
        if self.https:
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=CONNECT_TIMEOUT, context=self.context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=CONNECT_TIMEOUT)
        conn.connect()
        # small requests must not sit in Nagle's buffer waiting for a delayed ACK (40 ms)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn, False

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        target = self.prefix + path
        if params:
            target += "?" + urlencode({k: _param(v) for k, v in params.items()}, doseq=True)
        headers = dict(self.headers)
        body = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            headers["content-type"] = "application/json"
        headers["content-length"] = str(len(body or b""))
        try:
            conn, _reused = self._connection()
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionFailed(_why(exc)) from None
        try:
            conn.sock.settimeout(timeout or self.timeout)
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop(conn)
            raise ConnectionFailed(_why(exc)) from None
        if response.will_close:
            self._drop(conn)
        else:
            self._local.used_at = time.monotonic()
        return Reply(response.status, response.reason, content)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def _param(value: Any) -> Any:
    """Query values written as httpx writes them (true/false, an empty None)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return [_param(v) for v in value]
    return value


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__
