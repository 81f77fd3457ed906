"""Integration fixtures: a clean, migrated store per test on SQLite and on PostgreSQL.

Each engine is migrated once per session. SQLite: each test gets a copy of the migrated
file. PostgreSQL: the session creates its own database (`corral_test_<random>`, dropped at
the end) and each test starts with every table truncated and every id sequence reset: ~0.1 s
here, against ~0.6 s for `CREATE DATABASE x TEMPLATE y` + `DROP DATABASE` per test. Tests never
see each other's rows and never pay for migrations. The PostgreSQL server is only contacted
when a PostgreSQL test runs (`-m "not postgres"` never touches it).
"""

from __future__ import annotations

import gc
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.store import Store
from corral.store.tables import metadata

# The PostgreSQL server the tests use; they create (and drop) their own databases on it.
PG_ADMIN_URL = os.environ.get("CORRAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


# -- PostgreSQL: one server, many throw-away databases ------------------------------------


@dataclass
class PgServer:
    admin_url: str
    prefix: str = field(default_factory=lambda: f"corral_test_{secrets.token_hex(4)}")
    database: str | None = None
    error: str | None = None
    created: list[str] = field(default_factory=list)
    _count: int = 0

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=3)

    def url(self, dbname: str) -> str:
        return make_url(self.admin_url).set(database=dbname).render_as_string(hide_password=False)

    def create(self) -> str:
        self._count += 1
        name = f"{self.prefix}_{self._count}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer(PG_ADMIN_URL)
    try:
        with server.connect() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        server.error = f"cannot connect to {PG_ADMIN_URL}: {exc}".strip()
        yield server
        return
    try:
        yield server
    finally:
        for name in list(reversed(server.created)):
            server.drop(name)


@pytest.fixture(scope="session")
def pg_database(pg_server: PgServer, missing_service: Callable[[str, str], None]) -> str:
    """This session's database, migrated to head once."""
    if pg_server.error:
        missing_service("postgresql", pg_server.error)
    if pg_server.database is None:
        name = pg_server.create()
        Store(pg_server.url(name)).close()
        pg_server.database = name
    return pg_server.database


def _truncate_all(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        # a Store left open by an earlier test would hold locks: fail, do not hang
        conn.execute("SET lock_timeout = '5s'")
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


# -- SQLite: a migrated file, copied -------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "corral.db"
    store = Store(f"sqlite:///{path}")
    store.close()  # the last connection out checkpoints the WAL into the main file
    for extra in ("-wal", "-shm"):
        assert not Path(f"{path}{extra}").exists() or Path(f"{path}{extra}").stat().st_size == 0
    return path


# -- per test ------------------------------------------------------------------------------


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.param)
    if request.param == "postgres":
        # a connection left open must be blamed on the test that left it, not surface as an
        # anonymous warning when the session ends
        gc.collect()


@pytest.fixture
def db_url(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database for this test only."""
    if engine == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "corral.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    pg_server: PgServer = request.getfixturevalue("pg_server")
    url = pg_server.url(request.getfixturevalue("pg_database"))
    _truncate_all(url)
    yield url


@pytest.fixture
def empty_db_url(
    engine: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    missing_service: Callable[[str, str], None],
) -> Iterator[str]:
    """The URL of an empty database (no tables): for testing migrations themselves."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    pg_server: PgServer = request.getfixturevalue("pg_server")
    if pg_server.error:
        missing_service("postgresql", pg_server.error)
    name = pg_server.create()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop(name)


@pytest.fixture
def open_store(db_url: str) -> Iterator[Callable[..., Store]]:
    """Open (more) Stores on this test's database; all are closed at the end."""
    opened: list[Store] = []

    def _open(url: str | None = None, **kwargs: Any) -> Store:
        kwargs.setdefault("retry_backoff", 0.05)
        store = Store(url or db_url, **kwargs)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    return open_store()


@pytest.fixture
def coord(store: Store) -> Coordinator:
    return Coordinator(store, lease_ttl=30.0, offline_after=60.0)


@pytest.fixture
def admin(coord: Coordinator) -> Principal:
    _, secret = coord.store.tokens.create("admin", "test-admin")
    return coord.authenticate(secret)


# -- objects: a real S3-compatible server --------------------------------------------------


@pytest.fixture(scope="session")
def seaweedfs(
    tmp_path_factory: pytest.TempPathFactory, missing_service: Callable[[str, str], None]
) -> Iterator[Any]:
    """A SeaweedFS server with S3 on loopback for the session, with the bucket `corral`;
    tests keep to prefixes of their own."""
    from seaweedfs_server import start

    try:
        server = start(tmp_path_factory.mktemp("seaweedfs"))
    except RuntimeError as exc:
        missing_service("seaweedfs", str(exc))
        return
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["directory", "s3"])
def object_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    """Where a test's objects go, on each backend: the `objects` setting and its S3Options."""
    from corral.objects.backend import S3Options

    if request.param == "directory":
        return str(tmp_path / "objects"), None
    from seaweedfs_server import ACCESS_KEY, BUCKET, SECRET_KEY

    server = request.getfixturevalue("seaweedfs")
    options = S3Options(server.endpoint, ACCESS_KEY, SECRET_KEY, "us-east-1")
    return (
        f"s3://{BUCKET}/{request.node.name.replace('[', '-').rstrip(']')}-{secrets.token_hex(4)}",
        options,
    )


@pytest.fixture
def object_backend(object_url: tuple[str, Any], tmp_path: Path) -> Any:
    """An object backend of each kind, empty, for this test only."""
    from corral.objects.backend import open_backend

    backend = open_backend(object_url[0], tmp_path, object_url[1])
    backend.check()
    return backend
