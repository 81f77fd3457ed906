"""The long-lived process that runs tasks for one worker slot: requests in, replies out (stdlib).

Started as ``python -m corral.worker.task_runner REQ_FD REP_FD``. Each request is one JSON line
on REQ_FD naming a task file (cached on disk by hash), a function and its arguments; the reply
is one JSON line on REP_FD: ``{"ok": true, "result": …}`` or ``{"ok": false, "error": "one
line", "traceback": "…"}``. What the task prints goes to this process's own stdout and stderr,
which the worker reads as the job's log. A module is imported once per source hash and reused.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from types import CoroutineType, ModuleType
from typing import Any

KEEP_MODULES = 32  # task file versions kept imported in one process


def _watch_parent(parent: int) -> None:
    """Leave when the worker is gone, even in the middle of a task: nobody will read the end."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


class Runner:
    def __init__(self) -> None:
        self.modules: OrderedDict[str, ModuleType] = OrderedDict()
        self.home = os.getcwd()
        self.base_env = dict(os.environ)
        self.environ = _Environ()

    def function(self, req: dict[str, Any]) -> Callable[..., Any]:
        sha, name = req["sha256"], req["module"]
        module = self.modules.get(sha)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, req["path"])
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {req['path']}")
            module = importlib.util.module_from_spec(spec)
            # registered under its own name (the newest version wins), so that pickling,
            # dataclasses and the like find it
            sys.modules[name] = module
            spec.loader.exec_module(module)
            self.modules[sha] = module
            while len(self.modules) > KEEP_MODULES:
                self.modules.popitem(last=False)
        self.modules.move_to_end(sha)
        fn = getattr(module, req["function"], None)
        if not callable(fn):
            raise LookupError(f"{name}.py has no function {req['function']!r}")
        return fn  # type: ignore[no-any-return]

    def call(self, req: dict[str, Any]) -> str:
        try:
            fn = self.function(req)
        except BaseException as exc:
            return _failure(f"could not load task module {req.get('module')!r}", exc)
        self.environ.set({**self.base_env, **(req.get("env") or {})})
        try:
            os.chdir(req.get("cwd") or self.home)
            value = fn(**req["args"])
            if isinstance(value, CoroutineType):
                import asyncio  # only for async tasks: it is most of a new runner's imports

                value = asyncio.run(value)
        except SystemExit as exc:
            return json.dumps({"ok": False, "error": f"the task called sys.exit({exc.code!r})"})
        except BaseException as exc:
            return _failure("task raised", exc)
        finally:
            os.chdir(self.home)
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return json.dumps(
                {"ok": False, "error": f"the task's return value is not JSON-serialisable: {exc}"}
            )
        return '{"ok":true,"result":' + text + "}"


class _Environ:
    """Sets each call's environment, touching only what differs from the last call's: most of
    it is the same from one call to the next, and each change is a call into the C library."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}  # what the last call was given
        self._left: dict[bytes, bytes] | None = None  # os.environ's own table, as it left it

    def set(self, wanted: dict[str, str]) -> None:
        # os.environ keeps its table encoded; reading it back whole decodes every entry, a
        # sixth of the runner's time for a no-op call. Its table as the last call left it,
        # compared in C, tells whether the task changed anything (then it is read back whole).
        table = getattr(os.environ, "_data", None)
        if table is None or self._left is None or table != self._left:
            current = dict(os.environ)
        else:
            current = self._last
        for key in current.keys() - wanted.keys():
            del os.environ[key]
        for key, value in wanted.items():
            if current.get(key) != value:
                os.environ[key] = value
        self._last = wanted
        self._left = dict(table) if table is not None else None


def _failure(what: str, exc: BaseException) -> str:
    import traceback  # only when a task fails

    tb = exc.__traceback__
    # the runner's own frames say nothing about the task: start at the task's
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    line = f"{what} {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
    return json.dumps({"ok": False, "error": line.splitlines()[0][:1000], "traceback": text})


def _with_rss(reply: str, cwd: str | None = None) -> bytes:
    """The reply (always a JSON object) led by this process's resident memory in bytes: the
    worker decides on it whether to keep the process, without reading /proc itself. With
    `cwd`, also whether the call left its directory empty and as made (`"kept":1`): the
    worker then gives it to the next call without looking at it itself."""
    try:
        rss = int(os.pread(_statm(), 128, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        rss = -1  # unknown: the worker reads it itself
    kept = b'"kept":1,' if cwd is not None and left_as_made(cwd) else b""
    return b'{"rss":%d,' % rss + kept + reply.encode()[1:]


def left_as_made(path: str) -> bool:
    """The directory is empty, 0700 and this process's user's, as the worker made it (asked
    here after a call, and by the worker itself when no reply said so)."""
    try:
        st = os.stat(path)
        with os.scandir(path) as entries:
            empty = next(entries, None) is None
    except OSError:
        return False
    return empty and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()


_PAGE = os.sysconf("SC_PAGE_SIZE")
_STATM: list[int] = []


def _statm() -> int:
    """This process's /proc/self/statm, opened once: each read of it is then one call."""
    if not _STATM:
        _STATM.append(os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
    return _STATM[0]


def main(argv: list[str]) -> int:
    requests = os.fdopen(int(argv[1]), "rb")
    replies = os.fdopen(int(argv[2]), "wb")
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    for stream in (sys.stdout, sys.stderr):
        # whole lines reach the job's log as they are printed (not a block at the end)
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    runner = Runner()
    for line in requests:
        request = json.loads(line)
        reply = runner.call(request)
        # the task's output is in the pipes before its reply: the worker reads both in order
        sys.stdout.flush()
        sys.stderr.flush()
        replies.write(_with_rss(reply, request.get("cwd")) + b"\n")
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
