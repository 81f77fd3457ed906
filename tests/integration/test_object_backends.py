"""Object backends, the directory and a real S3 server (SeaweedFS), through the same tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from object_helpers import sha, stored

from corral.errors import HashMismatch, PayloadTooLarge
from corral.objects.backend import ObjectBackend
from corral.objects.directory import DirectoryBackend
from corral.objects.s3 import PART
from corral.objects.upload import ObjectUpload


def upload(backend: ObjectBackend, data: bytes, chunk: int = 64 * 1024) -> int:
    up = ObjectUpload(backend, sha(data), max_size=1 << 40)
    for i in range(0, len(data), chunk):
        up.feed(data[i : i + chunk])
    return up.finish()


def test_a_blob_goes_in_and_comes_out_whole_and_in_ranges(object_backend: ObjectBackend) -> None:
    data = os.urandom(300_000)
    digest = sha(data)
    assert object_backend.size(digest) is None
    assert upload(object_backend, data) == len(data)
    assert object_backend.size(digest) == len(data)
    assert b"".join(object_backend.read(digest)) == data
    assert b"".join(object_backend.read(digest, 1000, 1010)) == data[1000:1010]
    assert b"".join(object_backend.read(digest, 299_990)) == data[299_990:]
    assert b"".join(object_backend.read(digest, 5, 5)) == b""
    assert stored(object_backend) == [name for name in stored(object_backend) if digest in name]


def test_an_empty_blob(object_backend: ObjectBackend) -> None:
    assert upload(object_backend, b"") == 0
    assert object_backend.size(sha(b"")) == 0
    assert b"".join(object_backend.read(sha(b""))) == b""


def test_a_big_blob_goes_in_parts_and_memory_stays_bounded(object_backend: ObjectBackend) -> None:
    # over two S3 parts, so the multipart path and the copy to its name both run
    data = os.urandom(2 * PART + 12345)
    digest = sha(data)
    writer_seen = []
    up = ObjectUpload(object_backend, digest, max_size=1 << 40)
    for i in range(0, len(data), 1 << 20):
        up.feed(data[i : i + (1 << 20)])
        buffered = getattr(up._writer, "buffer", b"")
        writer_seen.append(len(buffered))
    assert up.finish() == len(data)
    assert max(writer_seen) < PART  # never more than one part held in memory
    assert object_backend.size(digest) == len(data)
    assert sha(b"".join(object_backend.read(digest))) == digest
    assert len(stored(object_backend)) == 1  # no temporary key or open upload left


def test_the_same_bytes_are_stored_once(object_backend: ObjectBackend) -> None:
    data = b"the same bytes" * 1000
    upload(object_backend, data)
    first = stored(object_backend)
    again = ObjectUpload(object_backend, sha(data), max_size=1 << 40)
    assert again.stored  # known already: only hashed, not written
    again.feed(data)
    assert again.finish() == len(data)
    assert stored(object_backend) == first
    assert len(first) == 1


def test_a_hash_mismatch_leaves_nothing(object_backend: ObjectBackend) -> None:
    data = os.urandom(PART + 10)  # a multipart upload was begun before the mismatch shows
    claimed = sha(b"something else")
    up = ObjectUpload(object_backend, claimed, max_size=1 << 40)
    up.feed(data)
    with pytest.raises(HashMismatch) as info:
        up.finish()
    assert claimed in info.value.message and sha(data) in info.value.message
    assert object_backend.size(claimed) is None
    assert object_backend.size(sha(data)) is None
    assert stored(object_backend) == []


def test_an_upload_over_the_cap_stops_and_leaves_nothing(object_backend: ObjectBackend) -> None:
    data = b"x" * 1000
    up = ObjectUpload(object_backend, sha(data), max_size=999)
    with pytest.raises(PayloadTooLarge):
        up.feed(data)
    up.abort()
    assert stored(object_backend) == []


def test_two_writers_of_one_blob_keep_one_copy(object_backend: ObjectBackend) -> None:
    data = os.urandom(5000)
    a = ObjectUpload(object_backend, sha(data), max_size=1 << 40)
    b = ObjectUpload(object_backend, sha(data), max_size=1 << 40)
    a.feed(data)
    b.feed(data)
    a.finish()
    b.finish()
    assert len(stored(object_backend)) == 1
    assert b"".join(object_backend.read(sha(data))) == data


def test_directory_blobs_are_read_only_files_under_their_hash(tmp_path: Path) -> None:
    backend = DirectoryBackend(tmp_path / "objects")
    data = b"hello"
    upload(backend, data)
    path = backend.path(sha(data))
    assert path.read_bytes() == data
    assert path.parent.parent.parent == backend.root
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    assert list(backend.staging.iterdir()) == []
