"""Making SQLite commits durable after the write lock is let go: an fsync of the WAL file.

With `synchronous=FULL` SQLite syncs the write-ahead log inside the commit, while it holds the
one write lock. A submit does not need that: what it needs is to be on disk before it answers
201. So a submit commits with `synchronous=NORMAL` (written to the WAL, atomic, not yet
synced), wakes the leasers, and then syncs the WAL file itself, while a leaser already takes
the write lock to lease the new job. The WAL is written in order: this sync makes every commit
before it durable, and a later synced commit (a finish) makes this one durable too.
"""

from __future__ import annotations

import os
import threading


class WalFile:
    """The WAL file of one SQLite database, kept open to be synced."""

    def __init__(self, database: str) -> None:
        self.path = database + "-wal"
        self.directory = os.path.dirname(os.path.abspath(database))
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: int | None = None

    def sync(self) -> None:
        """fsync the WAL as it is now (every commit written so far)."""
        with self._lock:
            try:
                inode = os.stat(self.path).st_ino
            except FileNotFoundError:
                # no log: SQLite has checkpointed it into the database file and removed it
                # (its last connection closed), syncing that file as it did
                return
            if self._fd is None or inode != self._inode:
                self._close_locked()
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                self._inode = inode
                # the log's name in its directory must survive as well as its bytes
                dir_fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._inode = None
