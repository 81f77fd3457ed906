"""Objects as files under one directory, each written whole before it gets its name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from corral.errors import ConfigError
from corral.objects.backend import CHUNK


class DirectoryBackend:
    """`ROOT/ab/cd/abcd…` per blob; uploads land in `ROOT/tmp` (the same filesystem), so a
    rename makes a whole, synced file appear under its name at once or not at all."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.staging = self.root / "tmp"
        try:
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError([f"objects: cannot use {self.root}: {exc.strerror}"]) from None

    def describe(self) -> str:
        return str(self.root)

    def check(self) -> None:
        if not os.access(self.staging, os.W_OK | os.X_OK):
            raise ConfigError([f"objects: cannot write to {self.staging}"])

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def writer(self) -> DirectoryWriter:
        return DirectoryWriter(self)

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with open(self.path(sha256), "rb") as f:
            f.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                data = f.read(CHUNK if left is None else min(CHUNK, left))
                if not data:
                    return
                if left is not None:
                    left -= len(data)
                yield data


class DirectoryWriter:
    def __init__(self, backend: DirectoryBackend) -> None:
        self.backend = backend
        fd, name = tempfile.mkstemp(prefix="upload-", dir=backend.staging)
        self.temp = Path(name)
        self.file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self, sha256: str) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        target = self.backend.path(sha256)
        if target.exists():  # the same bytes, stored before: keep one copy
            self.abort()
            return
        fresh = not target.parent.exists()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.temp, 0o444)
        os.replace(self.temp, target)
        _fsync_dir(target.parent)
        if fresh:  # the new fan-out directories' own entries
            _fsync_dir(target.parent.parent)
            _fsync_dir(self.backend.root)

    def abort(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


def _fsync_dir(path: Path) -> None:
    """A rename is durable only once its directory is synced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
