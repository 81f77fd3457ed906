"""Task files and `@corral.task`: the registry of Python tasks the server's operator controls.

The server finds tasks by parsing its task files (``ast``), never by importing them: it needs
none of the tasks' dependencies, runs none of their code (a task file with a syntax error or a
bad import cannot take the coordinator down), and a task's options must therefore be literals
that can be read without running anything. Workers import the files; the decorator (`corral.task_mark`) only
marks functions, so importing a task file on a worker has no side effect of corral's own.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from corral.dir_watch import DirWatch
from corral.domain.durations import parse_duration
from corral.domain.labels import LabelError, check_labels
from corral.domain.runspec import MAX_RETRIES, NAME_RE, JobSpec

log = logging.getLogger("corral.registry")

OPTIONS = ("name", "on", "timeout", "retries")
MAX_SOURCE = 4 * 1024 * 1024  # bytes of one task file
KEEP_SOURCES = 256  # versions of task files kept for jobs leased before a file changed


@dataclass(frozen=True)
class TaskDef:
    """A task as the server knows it: where its code is, and its defaults for jobs."""

    name: str
    module: str
    function: str
    sha256: str
    path: str
    line: int
    selector: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    retries: int | None = None

    def apply(self, job: JobSpec) -> JobSpec:
        """The job with this task's defaults where the job did not set its own."""
        given = job.given
        selector = job.selector if job.selector or "on" in given else dict(self.selector)
        timeout = job.timeout if job.timeout is not None else self.timeout
        retries = job.retries if job.retries or "retries" in given else (self.retries or 0)
        if selector == job.selector and timeout == job.timeout and retries == job.retries:
            return job  # the task sets no default the job lacks: most jobs of a big run
        return replace(job, selector=selector, timeout=timeout, retries=retries)

    def lease_fields(self) -> dict[str, str]:
        """What a worker needs to find the code (the source itself comes by its hash)."""
        return {"module": self.module, "function": self.function, "sha256": self.sha256}


@dataclass(frozen=True)
class Scanned:
    """What one task file holds: its tasks, or the problems that keep them out."""

    tasks: tuple[TaskDef, ...]
    problems: tuple[str, ...]
    source: bytes
    sha256: str


def scan_source(source: bytes, path: str) -> Scanned:
    """Find the decorated functions of one task file without running it."""
    sha = hashlib.sha256(source).hexdigest()
    module = Path(path).stem
    if not module.isidentifier():
        return Scanned((), (f"{path}: {module!r} is not a Python module name",), source, sha)
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        where = f"{path}:{exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else path
        msg = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        return Scanned((), (f"{where}: {msg}",), source, sha)
    tasks: list[TaskDef] = []
    problems: list[str] = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            if not _is_task(call.func if call is not None else deco):
                continue
            where = f"{path}:{node.lineno}: task {node.name!r}"
            try:
                options = _options(call)
                tasks.append(_define(node.name, module, sha, path, node.lineno, options))
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
    return Scanned(tuple(tasks), tuple(problems), source, sha)


def _is_task(expr: ast.expr) -> bool:
    """`@task` (imported from corral) or `@corral.task`."""
    if isinstance(expr, ast.Name):
        return expr.id == "task"
    return (
        isinstance(expr, ast.Attribute)
        and expr.attr == "task"
        and isinstance(expr.value, ast.Name)
        and expr.value.id == "corral"
    )


def _options(call: ast.Call | None) -> dict[str, Any]:
    if call is None:
        return {}
    if call.args:
        raise ValueError("options are given by keyword: name=, on=, timeout=, retries=")
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg not in OPTIONS:
            raise ValueError(f"unknown option {kw.arg or '**'!r} (expected {', '.join(OPTIONS)})")
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, SyntaxError, TypeError):
            raise ValueError(
                f"option {kw.arg!r} must be a literal (the server reads it without running the file)"
            ) from None
    return out


def _define(
    function: str, module: str, sha: str, path: str, line: int, options: Mapping[str, Any]
) -> TaskDef:
    name = options.get("name")
    if name is None:
        name = function
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"name {name!r} is not a task name (letters, digits and _ . + -)")
    on = options.get("on")
    selector: dict[str, str] = {}
    if on is not None:
        try:
            selector = check_labels(on)
        except LabelError as exc:
            raise ValueError(f"on: {exc}") from None
    timeout = options.get("timeout")
    if timeout is not None:
        timeout = parse_duration(timeout)  # ValueError names the problem
    retries = options.get("retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES
    ):
        raise ValueError(f"retries: expected a whole number from 0 to {MAX_RETRIES}")
    return TaskDef(name, module, function, sha, path, line, selector, timeout, retries)


@dataclass
class _File:
    key: tuple[int, int, int]  # (mtime_ns, size, inode): a change of any means read again
    scanned: Scanned


class Registry:
    """The tasks of the server's task directories, kept up to date by a cheap rescan.

    `refresh` looks at the files when something in the directories may have changed since the
    last look (`DirWatch`: on Linux the kernel says, else every time) and parses only the
    files that did, so a new version of a task file is seen by the next submit or lease
    without a restart. Every version's source stays available by hash for a while: jobs
    leased before a change still fetch the code they name.
    """

    def __init__(self, dirs: Sequence[str | os.PathLike[str]] = ()) -> None:
        self.dirs = [Path(d) for d in dirs]
        self._lock = threading.Lock()
        self._files: dict[Path, _File] = {}
        self._tasks: dict[str, TaskDef] = {}
        self._problems: list[str] = []
        self._sources: OrderedDict[str, bytes] = OrderedDict()
        self._seen: list[dict[str, tuple[int, int, int]]] | None = None  # the last look
        self._dir_problems: list[str] = []
        self._watch = DirWatch(self.dirs)
        self._links = False  # a task file is a symlink: its target may change unwatched
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            if not self._watch.may_have_changed() and not self._links:
                return  # nothing written, made or removed there since the last look
            # what is there now, per directory (unsorted: sorting waits for a change)
            found_by_dir: list[dict[str, tuple[int, int, int]]] = []
            dir_problems: list[str] = []
            links = False
            for d in self.dirs:
                here: dict[str, tuple[int, int, int]] = {}
                found_by_dir.append(here)
                try:
                    entries = os.scandir(d)
                except OSError as exc:
                    dir_problems.append(f"{d}: {exc.strerror or exc}")
                    continue
                with entries:
                    for entry in entries:
                        if not entry.name.endswith(".py") or entry.name.startswith((".", "_")):
                            continue
                        try:
                            st = entry.stat()
                        except OSError:
                            continue  # removed while we looked
                        if entry.is_file():
                            here[entry.path] = (st.st_mtime_ns, st.st_size, st.st_ino)
                            links = links or entry.is_symlink()
            self._links = links
            if found_by_dir == self._seen and not dir_problems and not self._dir_problems:
                return  # nothing changed
            self._seen, self._dir_problems = found_by_dir, dir_problems
            found = {Path(p): key for here in found_by_dir for p, key in sorted(here.items())}
            changed = [
                p for p, key in found.items() if (f := self._files.get(p)) is None or f.key != key
            ]
            for path in changed:
                self._files[path] = _File(found[path], self._read(path, found[path][1]))
            for gone in set(self._files) - set(found):
                del self._files[gone]
            # in the order of the directories, then of the names: the first definition wins
            self._files = {p: self._files[p] for p in found}
            self._rebuild(list(dir_problems))

    def _read(self, path: Path, size: int) -> Scanned:
        if size > MAX_SOURCE:
            return Scanned((), (f"{path}: over {MAX_SOURCE} bytes",), b"", "")
        try:
            source = path.read_bytes()
        except OSError as exc:
            return Scanned((), (f"{path}: {exc.strerror or exc}",), b"", "")
        scanned = scan_source(source, str(path))
        for problem in scanned.problems:
            log.warning("task file problem: %s", problem)
        return scanned

    def _rebuild(self, problems: list[str]) -> None:
        tasks: dict[str, TaskDef] = {}
        modules: dict[str, Path] = {}
        for path, f in self._files.items():
            problems.extend(f.scanned.problems)
            if not f.scanned.tasks:
                continue
            module = path.stem
            if module in modules:
                problems.append(f"{path}: module {module!r} is also {modules[module]}; ignored")
                continue
            modules[module] = path
            self._keep(f.scanned.sha256, f.scanned.source)
            for t in f.scanned.tasks:
                if t.name in tasks:
                    first = tasks[t.name]
                    problems.append(
                        f"{t.path}:{t.line}: task {t.name!r} is already defined at "
                        f"{first.path}:{first.line}; ignored"
                    )
                    continue
                tasks[t.name] = t
        self._tasks = tasks
        self._problems = problems

    def _keep(self, sha: str, source: bytes) -> None:
        self._sources[sha] = source
        self._sources.move_to_end(sha)
        while len(self._sources) > KEEP_SOURCES:
            self._sources.popitem(last=False)

    def lookup(self, name: str) -> TaskDef | None:
        with self._lock:
            return self._tasks.get(name)

    def lookup_all(self, names: Iterable[str]) -> dict[str, TaskDef]:
        """The tasks of these names that exist now (after a rescan)."""
        self.refresh()
        with self._lock:
            return {n: self._tasks[n] for n in names if n in self._tasks}

    def source(self, sha256: str) -> bytes | None:
        """A task file's source by content hash (this version or an earlier one still kept)."""
        with self._lock:
            found = self._sources.get(sha256)
        if found is None:
            self.refresh()
            with self._lock:
                found = self._sources.get(sha256)
        return found

    def tasks(self) -> list[TaskDef]:
        self.refresh()
        with self._lock:
            return sorted(self._tasks.values(), key=lambda t: t.name)

    def problems(self) -> list[str]:
        """Task files that could not be read, and tasks that were left out, with why."""
        with self._lock:
            return list(self._problems)
