"""One HTTP client for everything that talks to a coordinator: the CLI, workers, and `corral.Client`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from corral.config import DEFAULT_SERVER, TOKEN_FILE, corral_home
from corral.errors import (
    Conflict,
    CorralError,
    Forbidden,
    HashMismatch,
    InvalidInput,
    InvalidRunSpec,
    LeaseLost,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from corral.handles import RunHandle
from corral.json_http import ConnectionFailed, JsonConnections, Reply
from corral.objects.names import check_name, parse_sha256

OBJECT_CHUNK = 1024 * 1024
WAIT_ALL_AT_ONCE = 10_000  # runs one wait request lists (the server's cap)
WAIT_SLICE = 25.0  # seconds one wait request long-polls (below the HTTP read timeout)

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
        # small JSON requests take the standard library's lighter path (json_http.py); an
        # httpx transport given by the caller (tests) carries everything
        self.fast: JsonConnections | None = None
        if transport is None:
            self.fast = JsonConnections(self.url, verify, dict(headers), timeout)
        self._verify = verify
        self._transport = transport
        self._headers = headers
        self._timeout = timeout
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        """The httpx client for object streams (and everything, with a caller's transport):
        made on first use, since making one costs two TLS contexts, about 50 ms, even for a
        plain http:// server, and most commands never stream an object."""
        with self._lock:
            if self._http is None:
                transport = self._transport or httpx.HTTPTransport(
                    verify=self._verify,
                    # small requests must not sit in Nagle's buffer for a delayed ACK (40 ms)
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                )
                self._http = httpx.Client(
                    base_url=self.url,
                    headers=self._headers,
                    timeout=httpx.Timeout(self._timeout, connect=5.0),
                    transport=transport,
                )
            return self._http

    def set_token(self, token: str) -> None:
        self.token = token
        with self._lock:
            self._headers["authorization"] = f"Bearer {token}"
            if self._http is not None:
                self._http.headers["authorization"] = f"Bearer {token}"
        if self.fast is not None:
            self.fast.headers["authorization"] = f"Bearer {token}"

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
                response = self._send(method, path, json, params, timeout)
            except (httpx.TransportError, ConnectionFailed) as exc:
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

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        params: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> httpx.Response | Reply:
        if self.fast is not None:
            return self.fast.request(
                method, path, json_body=body, params=dict(params or {}), timeout=timeout
            )
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=5.0)
        return self.http.request(method, path, json=body, params=params, **kwargs)

    def close(self) -> None:
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()
        if self.fast is not None:
            self.fast.close()


def _message(response: httpx.Response | Reply) -> str:
    try:
        body = response.json()
        return str(body["error"]["message"])
    except Exception:
        return response.text[:500] or response.reason_phrase


def _decode(response: httpx.Response | Reply) -> Any:
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


@dataclass(frozen=True)
class ObjectRef:
    """An object as uploaded: its hash, its size, and the name it goes by (if any)."""

    sha256: str
    size: int
    name: str | None = None

    def __str__(self) -> str:
        return f"sha256:{self.sha256}"


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

    def submit(
        self, spec: Mapping[str, Any] | str | Path, *, wait: float | None = None
    ) -> RunHandle:
        """Submit a run: its spec as a dict (the JSON form) or the path of a TOML file.

        Returns the run as stored, as a RunHandle: read it like a dict, or `.wait()` for it.
        With `wait` (seconds, at most 300), the same request also waits for the run to end:
        the handle holds the ended run, or the run as it stood when `wait` ran out.
        """
        if isinstance(spec, (str, Path)):
            from corral.domain.runspec import parse_toml

            spec = parse_toml(Path(spec).read_text(encoding="utf-8")).to_dict()
        result: dict[str, Any] = self.http.request(
            "POST",
            "/api/v1/runs",
            json=dict(spec),
            params=self._params(wait=wait),
            timeout=None if wait is None else wait + 10.0,
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
            left = _wait_slice(deadline)
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

    def wait_all(
        self, runs: Iterable[int | RunHandle], timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Block until every run listed has ended (or `timeout` seconds pass); returns each
        run's id and state, in the order given. One request per 10,000 runs, not one each."""
        ids = [r.id if isinstance(r, RunHandle) else int(r) for r in runs]
        deadline = None if timeout is None else time.monotonic() + timeout
        states: dict[int, str] = {}
        for at in range(0, len(ids), WAIT_ALL_AT_ONCE):
            chunk = ids[at : at + WAIT_ALL_AT_ONCE]
            while True:
                left = _wait_slice(deadline)
                answer: dict[str, Any] = self.http.request(
                    "POST",
                    "/api/v1/runs/wait",
                    json={"runs": chunk, "timeout": left},
                    timeout=left + 10.0,
                    retry_for=30.0,
                )
                states.update((int(r["id"]), str(r["state"])) for r in answer["runs"])
                if answer["ended"] or (deadline is not None and time.monotonic() >= deadline):
                    break
        return [{"id": i, "state": states[i]} for i in ids]

    def job(self, ref: str | int, label: str) -> dict[str, Any]:
        result: dict[str, Any] = self.http.request("GET", f"/api/v1/runs/{ref}/jobs/{label}")
        return result

    def result(self, ref: str | int, label: str) -> Any:
        """A task job's return value (from its latest attempt); None until it has one."""
        return self.job(ref, label).get("result")

    def results(self, ref: str | int) -> dict[str, Any]:
        """Every job's label, state, reason and result in one read (spec order)."""
        result: dict[str, Any] = self.http.request("GET", f"/api/v1/runs/{ref}/results")
        return result

    def outputs(self, ref: str | int, label: str) -> list[dict[str, Any]]:
        """What a job's latest attempt kept: name, sha256 and size of each output."""
        answer = self.http.request("GET", f"/api/v1/runs/{ref}/jobs/{label}/outputs")
        return list(answer["outputs"])

    def output(self, ref: str | int, label: str, name: str) -> bytes:
        """The bytes of one output of a job's latest attempt ("stdout", or a path)."""
        for item in self.outputs(ref, label):
            if item["name"] == name:
                return self.get(item["sha256"])
        raise NotFound(f"job {label!r} of run {ref} kept no output {name!r}")

    def map(
        self,
        task: str,
        items: Iterable[Any],
        *,
        arg: str | None = None,
        on: Mapping[str, str] | None = None,
        timeout: float | str | None = None,
        retries: int | None = None,
        name: str | None = None,
        progress: bool = True,
    ) -> list[Any]:
        """Run the task once per item, in one run, and return the results in order.

        Each item is a mapping of keyword arguments, or is given as the argument `arg`.
        Waits (with a progress bar on a terminal). If any job fails, raises MapFailed listing
        each failed item and its reason, carrying the results that did come back.
        """
        from corral.mapping import run_map

        return run_map(
            self,
            task,
            items,
            arg=arg,
            on=on,
            timeout=timeout,
            retries=retries,
            name=name,
            progress=progress,
        )

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

    # -- objects -------------------------------------------------------------------------

    def put(self, data: bytes, name: str | None = None) -> ObjectRef:
        """Upload bytes as an object of this client's project (or the token's)."""
        if name is not None:
            check_name(name)
        sha = hashlib.sha256(data).hexdigest()
        size = self._put(sha, len(data), data)
        return ObjectRef(sha, size, name)

    def put_file(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ObjectRef:
        """Upload a file as an object, streamed: read once to hash it, once to send it.
        `progress` is called with the number of bytes sent at each chunk."""
        path = Path(path)
        name = path.name if name is None else name
        check_name(name)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(OBJECT_CHUNK):
                digest.update(chunk)
            size = f.tell()
        sha = digest.hexdigest()

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(OBJECT_CHUNK):
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk

        self._put(sha, size, chunks())
        return ObjectRef(sha, size, name)

    def _put(self, sha: str, size: int, content: bytes | Iterator[bytes]) -> int:
        try:
            response = self.http.http.put(
                f"/api/v1/objects/{sha}",
                content=content,
                params=self._params(),
                headers={"content-length": str(size), "content-type": "application/octet-stream"},
            )
        except httpx.TransportError as exc:
            raise Unreachable(
                f"cannot reach {self.http.url}: {exc or type(exc).__name__}"
            ) from None
        if response.status_code >= 500:
            raise Unreachable(
                f"{self.http.url} answered {response.status_code}: {_message(response)}"
            )
        return int(_decode(response)["size"])

    def get(self, sha: str) -> bytes:
        """The bytes of an object the project may read."""
        return b"".join(self.stream(sha))

    def stream(self, sha: str) -> Iterator[bytes]:
        """The bytes of an object in chunks; the hash is checked when the last has come
        (HashMismatch then, so a consumer must not trust the bytes before the end)."""
        sha = parse_sha256(sha)
        digest = hashlib.sha256()
        with self._get_stream(sha) as response:
            for chunk in response.iter_bytes(OBJECT_CHUNK):
                digest.update(chunk)
                yield chunk
        _check_hash(sha, digest.hexdigest())

    def get_file(
        self,
        sha: str,
        path: str | os.PathLike[str],
        progress: Callable[[int], None] | None = None,
    ) -> ObjectRef:
        """Stream an object to `path`: into a temporary file beside it, renamed when whole
        and checked, so `path` never holds part of an object."""
        path = Path(path)
        size = 0
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        # created here, not by mkstemp: the file gets the usual mode for the user's umask
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in self.stream(sha):
                    f.write(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return ObjectRef(parse_sha256(sha), size, path.name)

    def stat(self, sha: str) -> ObjectRef:
        """An object's size, if the project may read it (NotFound otherwise)."""
        sha = parse_sha256(sha)
        try:
            response = self.http.http.head(f"/api/v1/objects/{sha}", params=self._params())
        except httpx.TransportError as exc:
            raise Unreachable(
                f"cannot reach {self.http.url}: {exc or type(exc).__name__}"
            ) from None
        if response.status_code >= 400:
            # a HEAD answer has no body to name the problem
            status = response.status_code
            if status == 404:
                raise NotFound(f"no object sha256:{sha}")
            raise _BY_STATUS.get(status, CorralError)(f"sha256:{sha}: the server answered {status}")
        return ObjectRef(sha, int(response.headers["content-length"]))

    @contextlib.contextmanager
    def _get_stream(self, sha: str) -> Iterator[httpx.Response]:
        try:
            with self.http.http.stream(
                "GET", f"/api/v1/objects/{sha}", params=self._params()
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    if response.status_code >= 500:
                        raise Unreachable(
                            f"{self.http.url} answered {response.status_code}: {_message(response)}"
                        )
                    _decode(response)
                yield response
        except httpx.TransportError as exc:
            raise Unreachable(
                f"cannot reach {self.http.url}: {exc or type(exc).__name__}"
            ) from None


def _wait_slice(deadline: float | None) -> float:
    """Seconds one long-poll of a wait may ask for: at most 25, and never past `deadline`."""
    return (
        WAIT_SLICE if deadline is None else max(0.0, min(WAIT_SLICE, deadline - time.monotonic()))
    )


def _check_hash(expected: str, actual: str) -> None:
    if actual != expected:
        raise HashMismatch(expected, actual)
