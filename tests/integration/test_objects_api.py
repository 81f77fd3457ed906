"""Objects over HTTP, on both backends: bad input and other projects' objects change nothing."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from object_helpers import sha, stored

from corral.app import create_app
from corral.coordinator import Coordinator
from corral.objects.backend import ObjectBackend
from corral.store import Store

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
    )
    from fastapi.testclient import TestClient

MAX_BODY = 4096  # the cap on other bodies: objects are not held to it
MAX_OBJECT = 256 * 1024


@pytest.fixture
def engine() -> str:
    """The API is one code path over the store (its rows are tested on both engines)."""
    return "sqlite"


@pytest.fixture
def coord(store: Store, object_backend: ObjectBackend) -> Coordinator:
    return Coordinator(store, objects=object_backend, max_object_size=MAX_OBJECT)


@pytest.fixture
def app(coord: Coordinator) -> Any:
    return create_app(coord, max_body=MAX_BODY)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def tokens(coord: Coordinator) -> dict[str, str]:
    """Secrets by role: admin, and submitter and reader of `web` and of `ops`."""
    _, admin_secret = coord.store.tokens.create("admin", "api-admin")
    admin_principal = coord.authenticate(admin_secret)
    out = {"admin": admin_secret}
    for project in ("web", "ops"):
        for kind in ("submitter", "reader"):
            _, secret = coord.create_token(admin_principal, kind, project)
            out[f"{project}-{kind}"] = secret
    return out


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def put(
    client: TestClient, secret: str, data: bytes, digest: str | None = None, **params: str
) -> Any:
    return client.put(
        f"/api/v1/objects/{digest or sha(data)}", content=data, headers=auth(secret), params=params
    )


def state(coord: Coordinator) -> tuple[Any, ...]:
    """Everything the store and the backend hold about objects."""
    assert coord.blobs is not None
    return coord.store.objects.count(), tuple(stored(coord.blobs))


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["message"]
    return error


def test_put_then_get_head_and_ranges(client: TestClient, tokens: dict[str, str]) -> None:
    data = os.urandom(100_000)  # over the body cap of other routes
    digest = sha(data)
    answer = put(client, tokens["web-submitter"], data)
    assert answer.status_code == 201, answer.text
    assert answer.json()["sha256"] == digest and answer.json()["size"] == len(data)
    reader = auth(tokens["web-reader"])

    got = client.get(f"/api/v1/objects/sha256:{digest}", headers=reader)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["etag"] == f'"{digest}"'

    head = client.head(f"/api/v1/objects/{digest}", headers=reader)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data))

    part = client.get(f"/api/v1/objects/{digest}", headers={**reader, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = client.get(f"/api/v1/objects/{digest}", headers={**reader, "Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    head_part = client.head(f"/api/v1/objects/{digest}", headers={**reader, "Range": "bytes=5-"})
    assert head_part.status_code == 206
    assert head_part.headers["content-length"] == str(len(data) - 5)


def test_an_unsatisfiable_range_is_416(
    client: TestClient, coord: Coordinator, tokens: dict[str, str]
) -> None:
    data = b"0123456789"
    put(client, tokens["admin"], data)
    before = state(coord)
    answer = client.get(
        f"/api/v1/objects/{sha(data)}", headers={**auth(tokens["admin"]), "Range": "bytes=10-"}
    )
    error = error_of(answer, 416)
    assert error["type"] == "RangeNotSatisfiable"
    assert answer.headers["content-range"] == "bytes */10"
    assert state(coord) == before


def test_the_same_object_is_stored_once_however_often_it_is_uploaded(
    client: TestClient, coord: Coordinator, tokens: dict[str, str]
) -> None:
    data = os.urandom(20_000)
    assert put(client, tokens["web-submitter"], data).status_code == 201
    once = state(coord)
    for secret in (tokens["web-submitter"], tokens["ops-submitter"], tokens["admin"]):
        answer = put(client, secret, data)
        assert answer.status_code == 200, answer.text  # known: verified, not stored again
    (objects, grants), blobs = state(coord)
    assert objects == 1 and blobs == once[1] and len(blobs) == 1
    # web and ops, and `default` for the admin's upload that named no project
    assert grants == 3
    projects = {coord.store.projects.by_id(p).name for p in coord.store.objects.grants(sha(data))}
    assert projects == {"web", "ops", "default"}


def test_a_hash_mismatch_is_400_naming_both_and_stores_nothing(
    client: TestClient, coord: Coordinator, tokens: dict[str, str]
) -> None:
    data = b"what was sent"
    claimed = sha(b"what was named")
    before = state(coord)
    error = error_of(put(client, tokens["web-submitter"], data, claimed), 400)
    assert claimed in error["message"] and sha(data) in error["message"]
    assert state(coord) == before


def test_knowing_a_hash_is_not_having_the_bytes(
    client: TestClient, coord: Coordinator, tokens: dict[str, str]
) -> None:
    data = b"web's secret build"
    put(client, tokens["web-submitter"], data)
    before = state(coord)
    # ops names web's object but cannot send its bytes: no grant, nothing changes
    error_of(put(client, tokens["ops-submitter"], b"guess", sha(data)), 400)
    assert state(coord) == before
    error_of(client.get(f"/api/v1/objects/{sha(data)}", headers=auth(tokens["ops-reader"])), 404)


def test_projects_read_only_what_they_were_granted(
    client: TestClient, coord: Coordinator, tokens: dict[str, str]
) -> None:
    data = b"web only"
    digest = sha(data)
    put(client, tokens["web-submitter"], data)
    url = f"/api/v1/objects/{digest}"
    for secret in ("web-submitter", "web-reader", "admin"):
        assert client.get(url, headers=auth(tokens[secret])).content == data
    unknown = "0" * 64
    for secret in ("ops-submitter", "ops-reader"):
        hidden = client.get(url, headers=auth(tokens[secret]))
        missing = client.get(f"/api/v1/objects/{unknown}", headers=auth(tokens[secret]))
        # the same answer: whether an object exists does not leak across projects
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["error"]["type"] == missing.json()["error"]["type"] == "NotFound"
        assert client.head(url, headers=auth(tokens[secret])).status_code == 404
    # a project named in the query narrows the admin's view; a non-admin cannot widen theirs
    admin = auth(tokens["admin"])
    assert client.get(url, headers=admin, params={"project": "web"}).status_code == 200
    assert client.get(url, headers=admin, params={"project": "ops"}).status_code == 404
    other = client.get(url, headers=auth(tokens["ops-reader"]), params={"project": "web"})
    assert other.status_code == 404


def test_the_admin_uploads_to_a_named_project(
    client: TestClient, coord: Coordinator, tokens: dict[str, str]
) -> None:
    data = b"for ops"
    assert put(client, tokens["admin"], data, project="ops").status_code == 201
    assert (
        client.get(f"/api/v1/objects/{sha(data)}", headers=auth(tokens["ops-reader"])).content
        == data
    )
    assert (
        client.get(f"/api/v1/objects/{sha(data)}", headers=auth(tokens["web-reader"])).status_code
        == 404
    )


def test_who_may_not_upload_changes_nothing(
    client: TestClient, coord: Coordinator, tokens: dict[str, str]
) -> None:
    data = b"x" * 100
    before = state(coord)
    error = error_of(put(client, tokens["web-reader"], data), 403)
    assert "reader" in error["message"]
    error_of(put(client, tokens["web-submitter"], data, project="ops"), 404)
    error_of(client.put(f"/api/v1/objects/{sha(data)}", content=data), 401)
    error_of(put(client, "crl_not-a-token", data), 401)
    assert state(coord) == before


def test_a_malformed_sha_is_422(
    client: TestClient, coord: Coordinator, tokens: dict[str, str]
) -> None:
    before = state(coord)
    headers = auth(tokens["admin"])
    for bad in ("abc", "A" * 64, "sha256:" + "z" * 64, "%00" + "a" * 63, "a" * 63 + "%0A"):
        error = error_of(client.put(f"/api/v1/objects/{bad}", content=b"x", headers=headers), 422)
        assert "sha256" in error["message"]
        error_of(client.get(f"/api/v1/objects/{bad}", headers=headers), 422)
        assert client.head(f"/api/v1/objects/{bad}", headers=headers).status_code == 422
    # a path with slashes is no object route at all
    traversal = client.put("/api/v1/objects/..%2F..%2Fetc%2Fpasswd", content=b"x", headers=headers)
    assert traversal.status_code == 404
    assert state(coord) == before


def test_an_oversize_upload_is_413_before_a_byte_is_read(
    app: Any, coord: Coordinator, tokens: dict[str, str]
) -> None:
    before = state(coord)
    status, reads = asyncio.run(
        _raw_put(app, tokens["admin"], "1" * 64, declared=MAX_OBJECT + 1, chunks=10)
    )
    assert status == 413
    assert reads == 0
    assert state(coord) == before


def test_a_chunked_upload_stops_as_soon_as_it_passes_the_cap(
    app: Any, coord: Coordinator, tokens: dict[str, str]
) -> None:
    before = state(coord)
    chunk = 16 * 1024
    status, reads = asyncio.run(
        _raw_put(app, tokens["admin"], "1" * 64, declared=None, chunks=1000, size=chunk)
    )
    assert status == 413
    assert reads == MAX_OBJECT // chunk + 1  # the one that passed the cap, and no more
    assert state(coord) == before


async def _raw_put(
    app: Any, secret: str, digest: str, *, declared: int | None, chunks: int, size: int = 1024
) -> tuple[int, int]:
    """PUT straight through ASGI, counting the body reads: (status, reads)."""
    headers = [(b"authorization", f"Bearer {secret}".encode())]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": f"/api/v1/objects/{digest}",
        "raw_path": f"/api/v1/objects/{digest}".encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    reads = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * size, "more_body": reads < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"]), reads
