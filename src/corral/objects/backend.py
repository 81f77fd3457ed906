"""Where the bytes of objects live: the protocol every backend keeps, and one built from a URL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from corral.errors import ConfigError

CHUNK = 1024 * 1024  # bytes read or written at a time: memory stays bounded for any size


class BlobWriter(Protocol):
    """Bytes on their way in, not yet under any name: committed under their hash once it is
    known and checked, or discarded."""

    def write(self, data: bytes) -> None: ...

    def commit(self, sha256: str) -> None:
        """Make the bytes written the blob `sha256`, durably; a blob already there stays."""
        ...

    def abort(self) -> None:
        """Throw the bytes away; harmless after commit or a previous abort."""
        ...


class ObjectBackend(Protocol):
    """Blobs named by their sha256. Blobs are never changed and never overwritten."""

    def describe(self) -> str:
        """Where the blobs are, for people (no secrets)."""
        ...

    def check(self) -> None:
        """Raise ConfigError, naming the problem, when the blobs cannot be reached."""
        ...

    def size(self, sha256: str) -> int | None:
        """The blob's size, or None when there is no such blob."""
        ...

    def writer(self) -> BlobWriter: ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes from `start` to `end` (exclusive; None = to the end), in chunks."""
        ...


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible service; empty values fall back to boto3's defaults."""

    endpoint: str = ""
    access_key: str = ""
    secret_key: str = ""
    region: str = ""


def url_problems(url: str) -> list[str]:
    """What is wrong with an `objects` setting: a directory path or s3://bucket[/prefix]."""
    if not url or "://" not in url:
        return []
    parts = urlsplit(url)
    if parts.scheme == "file":
        return [] if parts.path else [f"objects: no directory in {url!r}"]
    if parts.scheme != "s3":
        return [f"objects: expected a directory or s3://bucket[/prefix], got {url!r}"]
    if not parts.netloc:
        return [f"objects: no bucket in {url!r}"]
    return []


def open_backend(url: str, home: Path, s3: S3Options | None = None) -> ObjectBackend:
    """The backend an `objects` setting names: "" is the directory `objects` under home."""
    problems = url_problems(url)
    if problems:
        raise ConfigError(problems)
    if url.startswith("s3://"):
        from corral.objects.s3 import S3Backend

        parts = urlsplit(url)
        return S3Backend(parts.netloc, parts.path.strip("/"), s3 or S3Options())
    from corral.objects.directory import DirectoryBackend

    if url.startswith("file://"):
        return DirectoryBackend(Path(urlsplit(url).path))
    return DirectoryBackend(Path(url).expanduser() if url else home / "objects")
