"""A job's inputs placed read-only in its working directory, and its outputs found (stdlib only)."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from corral.domain.dataflow import matches_output, path_problem

INPUTS = "inputs"
CHUNK = 1024 * 1024
MAX_FILES = 10_000  # outputs kept from one attempt; the rest are named as skipped
# not searched for outputs: what the job was given, and its TMPDIR
_NOT_OUTPUTS = (INPUTS, "tmp")


class InputProblem(ValueError):
    """An input could not be placed; the message names it (the attempt fails with it)."""


class _Hashing:
    """A file being written, hashed and counted as the bytes arrive."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.f.write(data)


Fetch = Callable[[str, "_Hashing"], None]  # writes an object's bytes, by hash, into a sink


def place_inputs(workdir: str, inputs: Sequence[tuple[str, str]], fetch: Fetch) -> None:
    """Fetch each (name, sha256) to `inputs/NAME`, check its hash, and leave files and
    directories read-only for everyone (the job may run as another user)."""
    root = os.path.join(workdir, INPUTS)
    os.makedirs(root, exist_ok=True)
    for name, sha256 in inputs:
        problem = path_problem(name)
        if problem is not None:
            raise InputProblem(f"input {name!r}: {problem}")
        target = os.path.join(root, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            with open(target, "xb") as f:
                sink = _Hashing(f)
                fetch(sha256, sink)
        except FileExistsError:
            raise InputProblem(f"input {name!r}: named twice") from None
        except Exception as exc:
            raise InputProblem(f"input {name!r} (sha256:{sha256[:12]}): {exc}") from exc
        got = sink.hash.hexdigest()
        if got != sha256:
            raise InputProblem(f"input {name!r}: got bytes with sha256 {got}, not {sha256}")
        os.chmod(target, 0o444)
    for dirpath, dirnames, _ in os.walk(root, topdown=False):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o555)
    os.chmod(root, 0o555)


@dataclass
class Found:
    """Files that match a job's declared outputs, and what was passed over and why."""

    files: list[tuple[str, str]] = field(default_factory=list)  # (name, path)
    skipped: list[str] = field(default_factory=list)


def find_outputs(workdir: str, patterns: Sequence[str]) -> Found:
    """Regular files under `workdir` that match the patterns; symbolic links (never followed)
    and special files are passed over, each named in `skipped`."""
    found = Found()
    if not patterns:
        return found
    for dirpath, dirnames, filenames in os.walk(workdir):
        rel_dir = os.path.relpath(dirpath, workdir)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in _NOT_OUTPUTS]
            rel_dir = ""
        dirnames.sort()
        for entry in sorted(dirnames + filenames):
            rel = f"{rel_dir}/{entry}" if rel_dir else entry
            if not matches_output(rel, patterns):
                continue
            path = os.path.join(dirpath, entry)
            try:
                st = os.lstat(path)
            except OSError as exc:
                found.skipped.append(f"{rel}: {exc.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_ISLNK(st.st_mode):
                found.skipped.append(f"{rel}: a symbolic link (never followed)")
            elif not stat.S_ISREG(st.st_mode):
                found.skipped.append(f"{rel}: not a regular file")
            elif path_problem(rel, glob=True) is not None:
                found.skipped.append(f"{rel!r}: {path_problem(rel, glob=True)}")
            elif len(found.files) >= MAX_FILES:
                found.skipped.append(f"{rel}: more than {MAX_FILES} outputs")
            else:
                found.files.append((rel, path))
    return found


def open_output(path: str) -> BinaryIO:
    """Open an output without following a link put there since it was found."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def digest(f: BinaryIO) -> tuple[str, int]:
    """sha256 and size of a file from where it is; it is left at its start again."""
    h = hashlib.sha256()
    size = 0
    while chunk := f.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    f.seek(0)
    return h.hexdigest(), size


class ObjectLink(Protocol):
    """What an attempt's dataflow needs of the worker's link to its coordinator."""

    def fetch_object(self, sha256: str, sink: _Hashing) -> None: ...

    def put_object(self, attempt_id: int, sha256: str, size: int, f: BinaryIO) -> None: ...


class AttemptData:
    """One attempt's inputs and outputs, as the hooks the executor or a task call runs."""

    def __init__(
        self,
        link: ObjectLink,
        attempt_id: int,
        payload: Mapping[str, Any],
        note: Callable[[str], None],
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        if payload.get("input_problem"):
            raise InputProblem(str(payload["input_problem"]))
        self.link = link
        self.attempt_id = attempt_id
        self.inputs = [
            (str(i["name"]), str(i["sha256"])) for i in payload.get("input_objects") or []
        ]
        if payload.get("inputs") and len(self.inputs) != len(payload["inputs"]):
            raise InputProblem("the lease names inputs without saying what they are")
        self.patterns = [str(p) for p in payload.get("outputs") or []]
        self.keep_stdout = payload.get("stdout") == "object"
        self.note = note
        self.stopping = stopping
        self.outputs: list[tuple[str, str, int]] = []
        self.problem = ""  # why an output could not be kept (the attempt fails with it)

    @classmethod
    def of(
        cls,
        link: ObjectLink,
        attempt_id: int,
        payload: Mapping[str, Any],
        note: Callable[[str], None],
        stopping: Callable[[], bool] = lambda: False,
    ) -> AttemptData | None:
        """The attempt's dataflow; None for a job that takes and keeps nothing."""
        if not (payload.get("inputs") or payload.get("outputs") or payload.get("stdout")):
            return None
        return cls(link, attempt_id, payload, note, stopping)

    def prepare(self, workdir: str) -> None:
        if self.inputs:
            place_inputs(workdir, self.inputs, self.link.fetch_object)

    def collect(self, workdir: str, stdout: BinaryIO | None) -> None:
        if self.stopping():
            return  # the worker is leaving: the lease goes back, nothing is reported
        found = find_outputs(workdir, self.patterns)
        for why in found.skipped:
            self.note(f"output not kept: {why}")
        if stdout is not None:
            self._keep("stdout", stdout)
        for name, path in found.files:
            if stdout is not None and name == "stdout":
                self.note("output not kept: stdout: the name of the job's stdout object")
                continue
            try:
                f = open_output(path)
            except OSError as exc:
                self.note(f"output not kept: {name}: {exc}")
                continue
            with f:
                self._keep(name, f)

    def _keep(self, name: str, f: BinaryIO) -> None:
        try:
            sha256, size = digest(f)
            self.link.put_object(self.attempt_id, sha256, size, f)
        except Exception as exc:
            self.problem = self.problem or f"could not keep output {name!r}: {exc}"
            self.note(self.problem)
            return
        self.outputs.append((name, sha256, size))
