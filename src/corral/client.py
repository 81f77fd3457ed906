"""One HTTP client for everything that talks to a coordinator: the CLI, workers, and `corral.Client`."""

from __future__ import annotations

import os
import random
import socket
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from corral.config import DEFAULT_SERVER, TOKEN_FILE, corral_home
from corral.errors import (
    Conflict,
    CorralError,
    Forbidden,
    InvalidInput,
    InvalidRunSpec,
    LeaseLost,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from corral.handles import RunHandle

_BY_STATUS: dict[int, type[CorralError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}


class Unreachable(CorralError):
    """The coordinator did not answer (connection refused, timed out, or 5xx)."""

    status = 503


def default_token(home: Path | None = None) -> str | None:
    if os.environ.get("CORRAL_TOKEN"):
        return os.environ["CORRAL_TOKEN"]
    path = (home or corral_home()) / TOKEN_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _verify(ca: str | None) -> ssl.SSLContext | bool:
    """What to trust: the system's CAs, or the one in `ca` (a file, or a directory of them)."""
    if not ca:
        return True
    try:
        if os.path.isdir(ca):
            return ssl.create_default_context(capath=ca)
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise CorralError(f"cannot use the CA certificate {ca}: {exc.strerror or exc}") from None


class Http:
    """A thin httpx wrapper: auth header, JSON errors turned into CorralError, retries."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        ca: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = (url or os.environ.get("CORRAL_SERVER") or DEFAULT_SERVER).rstrip("/")
        self.token = token if token is not None else default_token()
        verify = _verify(ca or os.environ.get("CORRAL_CA"))
        headers = {"user-agent": "corral"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if transport is None:
            # small requests must not sit in Nagle's buffer waiting for a delayed ACK (40 ms)
            transport = httpx.HTTPTransport(
                verify=verify, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            )
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            transport=transport,
        )

    def set_token(self, token: str) -> None:
        self.token = token
        self.http.headers["authorization"] = f"Bearer {token}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        retry_for: float = 0.0,
    ) -> Any:
        """Send, decode JSON, raise the matching CorralError; retry unreachable for `retry_for` s."""
        deadline = time.monotonic() + retry_for
        delay = 0.2
        while True:
            try:
                kwargs: dict[str, Any] = {}
                if timeout is not None:
                    kwargs["timeout"] = httpx.Timeout(timeout, connect=5.0)
                response = self.http.request(method, path, json=json, params=params, **kwargs)
            except httpx.TransportError as exc:
                error: CorralError = Unreachable(
                    f"cannot reach {self.url}: {exc or type(exc).__name__}"
                )
            else:
                if response.status_code < 500:
                    return _decode(response)
                error = Unreachable(
                    f"{self.url} answered {response.status_code}: {_message(response)}"
                )
            if time.monotonic() + delay > deadline:
                raise error
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    def close(self) -> None:
        self.http.close()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body["error"]["message"])
    except Exception:
        return response.text[:500] or response.reason_phrase


def _decode(response: httpx.Response) -> Any:
    if response.status_code < 400:
        return response.json() if response.content else None
    message = _message(response)
    try:
        error = response.json()["error"]
    except Exception:
        error = {}
    status = response.status_code
    if status == 422 or status == 400:
        problems = error.get("problems") or []
        if problems and error.get("type") == "InvalidRunSpec":
            raise InvalidRunSpec([(p.get("field") or "", p.get("message", "")) for p in problems])
        exc = InvalidInput(message)
        exc.field = error.get("field")
        raise exc
    if status == 409 and "lease" in message.lower():
        raise LeaseLost(message)
    raise _BY_STATUS.get(status, CorralError)(message)


class Client:
    """The Python client of corral: submit runs, wait for them, read jobs and logs.

    With no arguments it talks to the local server (`CORRAL_SERVER`, default
    http://127.0.0.1:8765) with the token from `CORRAL_TOKEN` or `$CORRAL_HOME/token`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        ca: str | None = None,
        project: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = Http(url, token, ca=ca, transport=transport)
        self.project = project or os.environ.get("CORRAL_PROJECT") or None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _params(self, **extra: Any) -> dict[str, Any]:
        params = {k: v for k, v in extra.items() if v is not None}
        if self.project and "project" not in params:
            params["project"] = self.project
        return params

    def submit(self, spec: Mapping[str, Any] | str | Path) -> RunHandle:
        """Submit a run: its spec as a dict (the JSON form) or the path of a TOML file.

        Returns the run as stored, as a RunHandle: read it like a dict, or `.wait()` for it.
        """
        if isinstance(spec, (str, Path)):
            from corral.domain.runspec import parse_toml

            spec = parse_toml(Path(spec).read_text(encoding="utf-8")).to_dict()
        result: dict[str, Any] = self.http.request(
            "POST", "/api/v1/runs", json=dict(spec), params=self._params()
        )
        return RunHandle(self, result)

    def run(self, ref: str | int) -> dict[str, Any]:
        """A run with its jobs."""
        result: dict[str, Any] = self.http.request("GET", f"/api/v1/runs/{ref}")
        return result

    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        answer = self.http.request("GET", "/api/v1/runs", params=self._params(**filters))
        return list(answer["runs"])

    def wait(self, ref: str | int, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run ends (or `timeout` seconds pass); returns the run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 25.0 if deadline is None else max(0.0, min(25.0, deadline - time.monotonic()))
            run: dict[str, Any] = self.http.request(
                "GET",
                f"/api/v1/runs/{ref}/wait",
                params={"timeout": left},
                timeout=left + 10.0,
                retry_for=30.0,
            )
            if run["state"] in ("passed", "failed", "canceled"):
                return run
            if deadline is not None and time.monotonic() >= deadline:
                return run

    def job(self, ref: str | int, label: str) -> dict[str, Any]:
        result: dict[str, Any] = self.http.request("GET", f"/api/v1/runs/{ref}/jobs/{label}")
        return result

    def log(
        self,
        ref: str | int,
        label: str,
        *,
        attempt: int | None = None,
        after: int = -1,
        wait: float = 0.0,
        limit: int = 1000,
    ) -> dict[str, Any]:
        """Log chunks after sequence number `after`; `wait` long-polls for new ones."""
        params: dict[str, Any] = {"after": after, "wait": wait, "limit": limit}
        if attempt is not None:
            params["attempt"] = attempt
        result: dict[str, Any] = self.http.request(
            "GET", f"/api/v1/runs/{ref}/jobs/{label}/log", params=params, timeout=wait + 15.0
        )
        return result

    def cancel(self, ref: str | int, label: str | None = None) -> dict[str, Any]:
        path = (
            f"/api/v1/runs/{ref}/cancel"
            if label is None
            else f"/api/v1/runs/{ref}/jobs/{label}/cancel"
        )
        result: dict[str, Any] = self.http.request("POST", path)
        return result

    def rerun(self, ref: str | int, failed: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self.http.request(
            "POST", f"/api/v1/runs/{ref}/rerun", json={"failed": failed}
        )
        return result

    def workers(self) -> list[dict[str, Any]]:
        return list(self.http.request("GET", "/api/v1/workers")["workers"])

    def hosts(self, check: bool = False) -> list[dict[str, Any]]:
        """The fleet's sites; `check` connects to each first and times a round trip."""
        if check:
            return list(self.http.request("POST", "/api/v1/hosts/check", json={})["hosts"])
        return list(self.http.request("GET", "/api/v1/hosts")["hosts"])

    def drain(self, name: str, draining: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self.http.request(
            "POST", f"/api/v1/workers/{name}/drain", json={"draining": draining}
        )
        return result

    def create_token(self, kind: str, project: str | None = None, name: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.http.request(
            "POST", "/api/v1/tokens", json={"kind": kind, "project": project, "name": name}
        )
        return result

    def tokens(self) -> list[dict[str, Any]]:
        return list(self.http.request("GET", "/api/v1/tokens")["tokens"])

    def revoke_token(self, token_id: int) -> None:
        self.http.request("DELETE", f"/api/v1/tokens/{token_id}")
