"""A submit's commit synced after the write lock is let go: readable at once, on disk at the end."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from corral.store.engine import Database
from corral.store.wal_sync import WalFile


@pytest.fixture
def db(tmp_path: Path) -> Any:
    d = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with d.write() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))
    yield d
    d.dispose()


def synced_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each os.fsync synced, by path."""
    paths: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def test_writes_in_the_block_are_seen_at_once_and_synced_once_at_its_end(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = synced_paths(monkeypatch)
    other = sqlite3.connect(tmp_path / "x.db")
    with db.sync_after():
        with db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with db.sync_after(), db.write() as conn:  # nested: one sync, at the outer end
            conn.execute(text("INSERT INTO t VALUES (2)"))
        # committed: another connection reads both before the log is synced
        assert other.execute("SELECT count(*) FROM t").fetchone() == (2,)
        assert not any(p.endswith("x.db-wal") for p in paths)
        # and the write lock is free meanwhile
        with db.write(durable=False) as conn:
            conn.execute(text("INSERT INTO t VALUES (3)"))
    wal = [p for p in paths if p.endswith("x.db-wal")]
    assert wal == [str(tmp_path / "x.db-wal")]
    # the directory too, the first time the log file is opened for syncing
    assert str(tmp_path) in paths
    other.close()


def test_a_block_that_wrote_nothing_durable_syncs_nothing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = synced_paths(monkeypatch)
    with db.sync_after():
        with db.write(durable=False) as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
    assert paths == []


def test_the_block_syncs_even_when_it_raises_after_writing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = synced_paths(monkeypatch)
    with pytest.raises(RuntimeError), db.sync_after():
        with db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("after the commit")
    assert any(p.endswith("x.db-wal") for p in paths)


def test_outside_a_block_a_durable_commit_syncs_inside_sqlite(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(WalFile, "sync", lambda self: synced.append(self.path))
    with db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        (mode,) = conn.exec_driver_sql("PRAGMA synchronous").one()
    assert mode == 2  # FULL: SQLite syncs the log in the commit itself
    assert synced == []


def test_a_write_not_synced_is_made_durable_on_demand_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = synced_paths(monkeypatch)
    with db.write(durable=False) as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    mark = db.commits
    assert not db.is_durable(mark) and paths == []
    db.make_durable(mark)
    assert db.is_durable(mark)
    assert any(p.endswith("x.db-wal") for p in paths)
    db.make_durable(mark)  # already on disk: no second sync
    assert sum(p.endswith("x.db-wal") for p in paths) == 1


def test_a_later_synced_commit_makes_an_earlier_write_durable_without_a_sync_of_its_own(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(WalFile, "sync", lambda self: synced.append(self.path))
    with db.write(durable=False) as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    mark = db.commits
    with db.write() as conn:  # synced in the commit: the log is written in order
        conn.execute(text("INSERT INTO t VALUES (2)"))
    assert db.is_durable(mark)
    db.make_durable(mark)
    assert synced == []
    # a later write not synced is not covered
    with db.write(durable=False) as conn:
        conn.execute(text("INSERT INTO t VALUES (3)"))
    assert not db.is_durable(db.commits)


def test_a_log_file_made_again_is_opened_again(tmp_path: Path) -> None:
    path = tmp_path / "y.db"
    (tmp_path / "y.db-wal").write_bytes(b"one")
    wal = WalFile(str(path))
    wal.sync()
    first = wal._inode
    (tmp_path / "y.db-wal").unlink()
    wal.sync()  # gone (checkpointed away): nothing to sync
    (tmp_path / "y.db-wal").write_bytes(b"two")
    wal.sync()
    # our open descriptor keeps the old inode alive, so its number cannot come back
    assert wal._inode == os.stat(tmp_path / "y.db-wal").st_ino != first
    wal.close()
