"""Placing inputs and finding outputs in an attempt's working directory, on a real filesystem."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from corral.worker.dataflow import AttemptData, InputProblem, digest, find_outputs, place_inputs


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Objects:
    """Objects by hash, written in small chunks as a link streams them."""

    def __init__(self, *blobs: bytes) -> None:
        self.blobs = {sha(b): b for b in blobs}
        self.put: list[tuple[int, str, int, bytes]] = []

    def fetch_object(self, sha256: str, sink: Any) -> None:
        data = self.blobs[sha256]
        for i in range(0, len(data), 3):
            sink.write(data[i : i + 3])

    def put_object(self, attempt_id: int, sha256: str, size: int, f: Any) -> None:
        self.put.append((attempt_id, sha256, size, f.read()))


def test_inputs_land_in_place_with_read_only_modes(tmp_path: Path) -> None:
    link = Objects(b"hello world", b"x")
    place_inputs(
        str(tmp_path), [("a/b/c.txt", sha(b"hello world")), ("x", sha(b"x"))], link.fetch_object
    )
    assert (tmp_path / "inputs/a/b/c.txt").read_bytes() == b"hello world"
    modes = {
        p: stat.S_IMODE(os.stat(tmp_path / "inputs" / p).st_mode)
        for p in ("", "a", "a/b", "a/b/c.txt", "x")
    }
    assert modes == {"": 0o555, "a": 0o555, "a/b": 0o555, "a/b/c.txt": 0o444, "x": 0o444}


def test_bytes_that_do_not_match_their_hash_fail_naming_the_input(tmp_path: Path) -> None:
    link = Objects(b"real")
    link.blobs[sha(b"claimed")] = b"real"
    with pytest.raises(InputProblem, match=r"input 'd': got bytes with sha256 .* not "):
        place_inputs(str(tmp_path), [("d", sha(b"claimed"))], link.fetch_object)


def test_a_missing_object_fails_naming_the_input(tmp_path: Path) -> None:
    with pytest.raises(InputProblem, match=r"^input 'gone' \(sha256:"):
        place_inputs(str(tmp_path), [("gone", "0" * 64)], Objects().fetch_object)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "a//b", ""])
def test_input_names_cannot_leave_the_inputs_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputProblem):
        place_inputs(str(tmp_path), [(name, sha(b"x"))], Objects(b"x").fetch_object)
    assert not (tmp_path.parent / "x").exists()


def test_outputs_are_regular_files_matching_the_patterns(tmp_path: Path) -> None:
    (tmp_path / "out/sub").mkdir(parents=True)
    (tmp_path / "out/a.txt").write_text("a")
    (tmp_path / "out/sub/b.txt").write_text("b")
    (tmp_path / "out/c.bin").write_text("c")
    (tmp_path / "out/link.txt").symlink_to("/etc/passwd")
    (tmp_path / "out/dir.txt").symlink_to("/etc")
    os.mkfifo(tmp_path / "out/pipe.txt")
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs/in.txt").write_text("given")
    found = find_outputs(str(tmp_path), ["out/*.txt", "*/in.txt", "out/*/*.txt"])
    assert [name for name, _ in found.files] == ["out/a.txt", "out/sub/b.txt"]
    assert found.skipped == [
        "out/dir.txt: a symbolic link (never followed)",
        "out/link.txt: a symbolic link (never followed)",
        "out/pipe.txt: not a regular file",
    ]


def test_files_whose_names_break_the_rules_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "bad\nname.txt").write_text("x")
    found = find_outputs(str(tmp_path), ["*.txt"])
    assert found.files == [] and "control characters" in found.skipped[0]


def test_an_attempt_keeps_stdout_and_files_and_says_what_it_skipped(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("result")
    (tmp_path / "l.txt").symlink_to(tmp_path / "r.txt")
    (tmp_path / "stdout").write_text("a file that would shadow stdout")
    notes: list[str] = []
    link = Objects()
    payload = {"outputs": ["*.txt", "stdout"], "stdout": "object"}
    data = AttemptData.of(link, 7, payload, notes.append)
    assert data is not None and data.keep_stdout
    stdout = tmp_path.parent / "stdout.bin"
    stdout.write_bytes(b"printed\n")
    with open(stdout, "rb") as f:
        data.collect(str(tmp_path), f)
    assert data.outputs == [("stdout", sha(b"printed\n"), 8), ("r.txt", sha(b"result"), 6)]
    assert [p[3] for p in link.put] == [b"printed\n", b"result"]
    assert notes == [
        "output not kept: l.txt: a symbolic link (never followed)",
        "output not kept: stdout: the name of the job's stdout object",
    ]
    assert AttemptData.of(link, 8, {"command": "x"}, notes.append) is None


def test_an_unresolved_input_fails_before_anything_runs() -> None:
    with pytest.raises(InputProblem, match="produced no"):
        AttemptData.of(
            Objects(), 1, {"inputs": [{}], "input_problem": "job 'a' produced no 'x'"}, print
        )


def test_digest_leaves_the_file_at_its_start(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc" * 1000)
    with open(tmp_path / "f", "rb") as f:
        assert digest(f) == (sha(b"abc" * 1000), 3000)
        assert f.read(3) == b"abc"
