"""Connecting to the store: SQLite (WAL, durable commits) or PostgreSQL, and their differences."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Float, create_engine, event, literal_column, select
from sqlalchemy.engine import make_url
from sqlalchemy.sql.elements import ColumnElement

from corral.errors import ConfigError
from corral.store.wal_sync import WalFile


def normalize_url(url: str) -> str:
    """Plain `postgresql://` URLs get the psycopg 3 driver; a bare path means SQLite."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().absolute()}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


#: SQLite connections kept open for readers (a fleet's sites read at once, and a connection
#: opened past these costs its setup, WAL and pragmas, for one read)
READERS_KEPT = 32


class Database:
    """An engine plus the few things that differ by dialect, each in one named place."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        if not (self.is_sqlite or self.is_postgres):
            raise ConfigError([f"db: unsupported database {parsed.get_backend_name()!r}"])
        # SQLite has one writer at a time: queueing writers on a lock in this process is
        # cheaper and fairer than letting them spin on SQLITE_BUSY.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._writer: Connection | None = None
        self._wal: WalFile | None = None
        database = parsed.database if self.is_sqlite else None
        if database and database != ":memory:" and not database.startswith("file:"):
            self._wal = WalFile(database)
        self._deferring = threading.local()  # this thread's `sync_after` depth and debt
        # SQLite commits made so far by this process, and how many of them are known to be on
        # disk (a commit synced inside SQLite, or the log synced here, covers all before it)
        self._commits = 0
        self._synced = 0
        # SQLite readers kept checked out between reads, last used first: a checkout from
        # the engine's pool and its return (events, reset) cost more than most reads
        self._idle_readers: list[Connection] = []
        self._disposed = False
        self.engine = self._create()

    def _create(self) -> Engine:
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=READERS_KEPT,
                max_overflow=32,
            )
            _sqlite_setup(engine)
            return engine
        return create_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)

    def now_sql(self) -> ColumnElement[float]:
        """The store's clock as a SQL expression: lease expiry never trusts a worker's clock."""
        if self.is_postgres:
            return literal_column("extract(epoch from clock_timestamp())::float8", Float)
        return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)

    def now(self, conn: Connection) -> float:
        if self.is_sqlite:
            # the same machine's clock, without a round trip
            return time.time()
        return float(conn.execute(select(self.now_sql())).scalar_one())

    @contextlib.contextmanager
    def write(self, durable: bool = True) -> Iterator[Connection]:
        """A write transaction: BEGIN IMMEDIATE on SQLite, so no read-to-write upgrade can fail.

        `durable=False` is for what may be lost with the machine's power and nothing else:
        leases, starts, heartbeats, log chunks. On SQLite such a commit skips its fsync; it
        is still atomic and survives a crash of the process, and the next durable commit
        (a submit, a finish) makes it durable too, since the WAL is written in order. A lease
        lost with the power only sends its job back to the queue, as an expired one would.
        """
        if self._write_lock is not None:
            with self._write_lock:
                # one connection serves every write: writes are serial anyway, and a pool
                # checkout per transaction costs as much as a small statement
                if self._writer is None or self._writer.closed:
                    self._writer = self.engine.connect().execution_options(corral_write=True)
                conn = self._writer
                raw: Any = conn.connection.driver_connection
                deferred = durable and self._wal is not None and self._deferring_now()
                if not durable or deferred:
                    raw.execute("PRAGMA synchronous=NORMAL")
                try:
                    with _sqlite_transaction(conn, raw, "BEGIN IMMEDIATE"):
                        yield conn
                    self._commits += 1
                    if deferred:
                        self._deferring.owed = True
                    elif durable:
                        self._synced = self._commits
                finally:
                    if not durable or deferred:
                        raw.execute("PRAGMA synchronous=FULL")
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextlib.contextmanager
    def sync_after(self) -> Iterator[None]:
        """Durable writes of this thread inside the block commit without their fsync, which
        is made once when the block ends, after the write lock is let go (so another writer
        can go on meanwhile): what the block did after its writes, such as waking the
        leasers, happens while the log is synced. Only SQLite files; elsewhere a no-op.

        A commit inside is visible to other connections before it is synced: a leaser may
        take the new job at once. The caller answers only after the block, so no one outside
        is told of a write that the power could still take back."""
        if self._wal is None:
            yield
            return
        depth = getattr(self._deferring, "depth", 0)
        self._deferring.depth = depth + 1
        try:
            yield
        finally:
            self._deferring.depth = depth
            if depth == 0 and getattr(self._deferring, "owed", False):
                self._deferring.owed = False
                self._sync_wal()

    @property
    def syncs_on_demand(self) -> bool:
        """Whether a write made with `durable=False` can be made durable later by
        `make_durable` (a SQLite file whose log this process syncs itself)."""
        return self._wal is not None

    @property
    def commits(self) -> int:
        """A mark of the writes made so far, for `make_durable` (0 where every commit is
        durable as it is made)."""
        return self._commits

    def is_durable(self, upto: int) -> bool:
        """Whether every durable write up to the mark `upto` is on disk, and every write made
        with `durable=False` where `syncs_on_demand`."""
        return self._wal is None or self._synced >= upto

    def make_durable(self, upto: int) -> None:
        """Every write up to the mark `upto` on disk: the log synced now, unless a synced
        commit since then has done it already. For a caller that wrote with `durable=False`
        and must not answer before its write is safe."""
        if not self.is_durable(upto):
            self._sync_wal()

    def _sync_wal(self) -> None:
        assert self._wal is not None
        made = self._commits  # read before the sync: what is committed now goes with it
        self._wal.sync()
        # (a stale read of the other figure can only make it lower: a later sync, not a lost one)
        self._synced = max(self._synced, made)

    def _deferring_now(self) -> bool:
        return getattr(self._deferring, "depth", 0) > 0

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        if not self.is_sqlite:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        try:
            conn = self._idle_readers.pop()  # atomic: no lock needed
        except IndexError:
            conn = self.engine.connect()
        clean = False
        try:
            with _sqlite_transaction(conn, conn.connection.driver_connection, "BEGIN"):
                yield conn
            clean = True
        finally:
            # a reader that failed is not trusted again; nor kept past what the pool allows
            if (
                clean
                and not self._disposed
                and not conn.closed
                and len(self._idle_readers) < READERS_KEPT
            ):
                self._idle_readers.append(conn)
            else:
                conn.close()

    def skip_locked(self) -> dict[str, Any]:
        """Arguments for `with_for_update`: rows another coordinator is leasing are passed over."""
        return {"skip_locked": True} if self.is_postgres else {}

    def dispose(self) -> None:
        if self._write_lock is not None:
            with self._write_lock:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
        self._disposed = True
        while self._idle_readers:
            self._idle_readers.pop().close()
        if self._wal is not None:
            self._wal.close()
        self.engine.dispose()


@contextlib.contextmanager
def _sqlite_transaction(conn: Connection, raw: Any, begin: str) -> Iterator[None]:
    """A transaction begun on the driver: SQLAlchemy's begin and its events cost more than a
    prepared statement. A statement run through SQLAlchemy inside it finds the transaction
    open (see `_on_begin`) and SQLAlchemy then ends it itself."""
    raw.execute(begin)
    try:
        yield
    except BaseException:
        if conn.in_transaction():
            conn.rollback()
        elif raw.in_transaction:
            raw.rollback()
        raise
    if conn.in_transaction():
        conn.commit()
    elif raw.in_transaction:
        raw.commit()


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # let SQLAlchemy's begin event issue BEGIN itself (pysqlite's own is deferred only)
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        # Switching a new file to WAL takes an exclusive lock and does not wait on the busy
        # handler: when two processes open a fresh store at once, one must try again.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                cur.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # WAL commits are durable only with FULL
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        raw: Any = conn.connection.driver_connection
        if raw.in_transaction:
            return  # begun on the driver (`_sqlite_transaction`): SQLAlchemy joins it
        write = conn.get_execution_options().get("corral_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def insert_ignoring_duplicates(db: Database, table: Any) -> Any:
    """INSERT that skips rows whose unique key exists (a retried log upload is not stored twice)."""
    if db.is_postgres:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()
