"""`corral put` and `corral get` against a real `corral serve`, as a user types them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from acceptance_helpers import Cluster


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_then_get_to_a_file_and_to_stdout(shared: Cluster, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks each way
    src = tmp_path / "build.bin"
    src.write_bytes(data)
    put = shared.cli("put", str(src))
    assert put.code == 0, put
    assert f"sha256:{digest(data)}" in put.out
    assert str(len(data)) in put.out

    again = shared.cli("put", str(src))  # the same bytes: accepted, stored once
    assert again.code == 0, again
    blobs = [p for p in (shared.home / "objects").rglob(digest(data))]
    assert len(blobs) == 1 and blobs[0].read_bytes() == data

    out = tmp_path / "copy.bin"
    got = shared.cli("get", f"sha256:{digest(data)}", "-o", str(out))
    assert got.code == 0, got
    assert out.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".copy.bin")] == []

    small = tmp_path / "hello.txt"
    small.write_bytes(b"hello, corral\n")
    assert shared.cli("put", str(small)).code == 0
    cat = shared.cli("get", digest(b"hello, corral\n"))
    assert cat.code == 0, cat
    assert cat.out == "hello, corral\n"


def test_projects_see_only_their_objects(shared: Cluster, tmp_path: Path) -> None:
    created = shared.cli("token", "create", "--project", "objects-a")
    assert created.code == 0, created
    submitter_a = created.out.strip()
    created = shared.cli("token", "create", "--project", "objects-b", "--read-only")
    assert created.code == 0, created
    reader_b = created.out.strip()

    data = f"only for project objects-a {os.urandom(8).hex()}".encode()
    src = tmp_path / "a.txt"
    src.write_bytes(data)
    put = shared.cli("put", str(src), token=submitter_a)
    assert put.code == 0, put

    mine = shared.cli("get", digest(data), token=submitter_a)
    assert mine.code == 0, mine
    assert mine.out.encode() == data
    theirs = shared.cli("get", digest(data), "-o", str(tmp_path / "stolen"), token=reader_b)
    unknown = shared.cli("get", "0" * 64, token=reader_b)
    assert theirs.code == unknown.code == 2
    assert "no object sha256:" in theirs.err and "no object sha256:" in unknown.err
    assert not (tmp_path / "stolen").exists()
    # a reader may not upload, and the admin can name the project
    refused = shared.cli("put", str(src), token=reader_b)
    assert refused.code == 2 and "reader token cannot upload" in refused.err
    admin_put = shared.cli("put", "--project", "objects-b", str(src))
    assert admin_put.code == 0, admin_put
    now_theirs = shared.cli("get", digest(data), "-o", str(tmp_path / "granted"), token=reader_b)
    assert now_theirs.code == 0, now_theirs
    assert (tmp_path / "granted").read_bytes() == data


def test_bad_input_through_the_cli(cluster: Cluster, tmp_path: Path) -> None:
    cluster.home.mkdir(parents=True, exist_ok=True)
    (cluster.home / "corral.toml").write_text("max_object_size = 100000\n")
    cluster.start(local_slots=0)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(100_001) * 200)  # 20 MB: far past the cap, not just past it
    too_big = cluster.cli("put", str(big))
    assert too_big.code == 2, too_big
    assert "at most 100000 bytes" in too_big.err
    bad_sha = cluster.cli("get", "not-a-sha")
    assert bad_sha.code == 2 and "64 lowercase hex" in bad_sha.err
    missing = cluster.cli("put", str(tmp_path / "nope"))
    assert missing.code == 2
    objects = cluster.home / "objects"
    assert [p for p in objects.rglob("*") if p.is_file()] == []


def test_the_python_client(shared: Cluster, tmp_path: Path) -> None:
    import pytest

    from corral import Client
    from corral.client import ObjectRef
    from corral.errors import InvalidInput, NotFound

    data = os.urandom(2 * 1024 * 1024 + 1)
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    with Client(shared.url, shared.token) as client:
        ref = client.put(data, name="out/data.bin")
        assert ref == ObjectRef(digest(data), len(data), "out/data.bin")
        assert str(ref) == f"sha256:{digest(data)}"
        assert client.get(str(ref)) == data
        assert client.stat(ref.sha256).size == len(data)

        path = tmp_path / "in.txt"
        path.write_bytes(b"from a file")
        file_ref = client.put_file(path)
        assert (file_ref.name, file_ref.size) == ("in.txt", 11)
        assert client.get_file(file_ref.sha256, tmp_path / "back.txt").size == 11
        assert (tmp_path / "back.txt").read_bytes() == b"from a file"

        with pytest.raises(InvalidInput, match=r"'\.\.'"):
            client.put(b"x", name="../escape")
        with pytest.raises(NotFound):
            client.get("f" * 64)
        with pytest.raises(NotFound):
            client.get_file("f" * 64, tmp_path / "never")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["back.txt", "in.txt"]
