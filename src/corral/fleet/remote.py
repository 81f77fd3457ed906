"""What runs on a fleet host: the executor behind an execnet channel (standard library only).

Shipped with `gateway.remote_exec(this module)`; nothing is installed on the host. The first
channel of a connection brings the executor's source, and this module's own, and keeps them in
the remote interpreter's `sys.modules`. Jobs then run on job channels that import it from
there; the coordinator keeps each such channel for its next job, one job at a time, since
opening a channel costs the host a thread and a compile. A job dies with its channel: when the
channel or the whole connection goes, its process group is killed. Working directories left
as made are kept for the next jobs of the connection and removed when it closes. They are made
in a directory of the site's own on the host, which the connection holds: the next connection
of the site removes what the jobs of one killed outright left there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import platform
import queue
import shutil
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from typing import Any

EXECUTOR = "corral.worker.executor"
ITSELF = "corral.fleet.remote"  # this module as installed, whatever name it runs under now
MAX_SHARED = 64 * 1024  # bytes of KEY=VALUE lines a job may publish


def install(modules: dict[str, str]) -> None:
    """Make shipped modules importable under their own names (their parents as empty packages)."""
    for name, source in modules.items():
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent not in sys.modules:
                package = types.ModuleType(parent)
                package.__path__ = []
                sys.modules[parent] = package
        module = types.ModuleType(name)
        module.__file__ = f"<corral:{name}>"
        module.__dict__["__corral_source__"] = source  # no file: a module that runs itself
        sys.modules[name] = module  # before exec: dataclasses look their module up by name
        exec(compile(source, module.__file__, "exec"), module.__dict__)


def about() -> dict[str, Any]:
    from corral.worker.tracking import tracker  # shipped by install()

    pool = tracker()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "hostname": platform.node(),
        "pid": os.getpid(),
        # what ends a job's processes on this host (worker/tracking.py): a job that daemonizes
        # with setsid keeps its daemon only where its group alone is killed
        "containment": f"cgroup v{pool.version}" if pool is not None else "process group",
    }


def parse_shared(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines as a dict; blank lines, comments and lines without a valid key are skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key and (key[0].isalpha() or key[0] == "_") and key.replace("_", "a").isalnum():
            out[key] = value
    return out


_kept: list[Any] = []  # the connection's Workdirs: directories left as made, for the next jobs
_dogs: list[Any] = []  # the connection's Watchdog: ends its jobs if this interpreter is killed
_outputs: list[str] = []  # the connection's private directory for the jobs' $CORRAL_OUTPUT
_roots: list[Any] = []  # the connection's WorkerRoot, where its jobs' directories are made
_lock = threading.Lock()
_numbers = itertools.count(1)


def claim(site: str, containment: str = "auto") -> None:
    """Hold the site's own directory on the host for the connection's life (`worker_root`),
    clearing what the jobs of an earlier connection's Python, killed outright, left there. A
    host where it cannot be made runs its jobs in the temp directory itself, as before.
    `containment`: the host's choice of what ends its jobs' processes (worker/tracking.py)."""
    from corral.worker.tracking import choose  # shipped by install()
    from corral.worker.workdirs import worker_root

    choose(containment)
    with _lock:
        if not _roots:
            with contextlib.suppress(OSError):
                _roots.append(worker_root(tempfile.gettempdir(), f"site-{site}"))


def _root() -> str:
    return str(_roots[0].path) if _roots else ""


def workdirs() -> Any:
    from corral.worker.workdirs import Workdirs  # shipped by install()

    with _lock:
        if not _kept:
            _kept.append(Workdirs())
        return _kept[0]


def watchdog() -> Any:
    """The connection's watchdog (worker/watchdog.py). The jobs already die with their channel
    or connection; this interpreter killed outright (the out-of-memory killer, say) would
    leave them running, unseen."""
    from corral.worker.watchdog import Watchdog  # shipped by install()

    with _lock:
        if not _dogs:
            _dogs.append(Watchdog())
        return _dogs[0]


def output_path() -> str:
    """A fresh name for a job's $CORRAL_OUTPUT, not created: the job makes it if it writes to
    it. In a directory of this connection's own (0700), so no one else can put a file there."""
    with _lock:
        if not _outputs:
            _outputs.append(tempfile.mkdtemp(prefix="corral-outputs-", dir=_root() or None))
        return os.path.join(_outputs[0], str(next(_numbers)))


def close() -> None:
    """The connection is closing: remove what it kept on the host."""
    with _lock:
        kept, _kept[:] = list(_kept), []
        outputs, _outputs[:] = list(_outputs), []
        dogs, _dogs[:] = list(_dogs), []
        roots, _roots[:] = list(_roots), []
    for w in kept:
        w.close()
    for dog in dogs:
        dog.close()
    for path in outputs:
        shutil.rmtree(path, ignore_errors=True)
    for root in roots:
        root.release()


def run_job(channel: Any, spec: dict[str, Any], attach: Callable[[Any], None]) -> None:
    """Run one job; stream ("out", stream, ts, data), end with ("end", JSON of its result and
    shared values): one string for execnet to carry, decoded by the json module's C code.

    `attach(execution)` is called before it starts, so that whoever reads the channel can
    kill it."""
    from corral.worker.executor import ExecSpec, Execution  # shipped by install()

    output = output_path()
    env = dict(spec.get("env") or {})
    env["CORRAL_OUTPUT"] = output
    argv = spec.get("argv")
    execution = Execution(
        ExecSpec(
            command=spec.get("command"),
            argv=tuple(argv) if argv else None,
            env=env,
            workdir_root=_root(),
            timeout=spec.get("timeout"),
            grace=float(spec.get("grace", 5.0)),
            log_limit=int(spec.get("log_limit", 16 * 1024 * 1024)),
            mask=tuple(spec.get("mask") or ()),
            sudo_password=spec.get("sudo_password"),
            workdirs=workdirs(),
            watchdog=watchdog(),
        ),
        lambda c: _send(channel, ("out", c.stream, c.ts, c.data)),
    )
    attach(execution)
    try:
        result = execution.run()
    finally:
        shared = _take_shared(output)
    # every field of the executor's result, which the coordinator makes again as it is
    result_json = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    result_json["resources"] = dict(result.resources)
    _send(channel, ("end", json.dumps({"result": result_json, "shared": shared})))


def _take_shared(output: str) -> dict[str, str]:
    """The values a job published in its $CORRAL_OUTPUT file, which goes with them."""
    try:
        with open(output, encoding="utf-8", errors="replace") as f:
            shared = parse_shared(f.read(MAX_SHARED))
    except FileNotFoundError:
        return {}  # the job wrote none (most jobs): nothing to remove either
    except OSError:
        shared = {}  # unreadable: it goes all the same
    with contextlib.suppress(OSError):
        os.unlink(output)
    return shared


def _send(channel: Any, message: tuple[Any, ...]) -> None:
    with contextlib.suppress(Exception):  # a closed channel: the watcher stops the job
        channel.send(message)


class _Current:
    """The job a kept channel runs now, by number: a kill names the job it is for, so one
    that crosses the job's end is not taken for the next job's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.number = 0
        self.execution: Any = None
        self.early: dict[int, str] = {}  # kills that came before their job was under way
        self.gone = ""  # the channel ended: every job from now on is killed at once

    def attach(self, number: int, execution: Any) -> None:
        with self.lock:
            self.number, self.execution = number, execution
            reason = self.early.pop(number, "") or self.gone
            # numbers only grow: a kill for an earlier job came after that job's end
            self.early = {n: r for n, r in self.early.items() if n > number}
        if reason:
            execution.kill(reason)

    def kill(self, number: int, reason: str) -> None:
        with self.lock:
            execution = self.execution if number == self.number else None
            if number > self.number:
                self.early[number] = reason
        if execution is not None:
            execution.kill(reason)

    def end(self, reason: str) -> None:
        with self.lock:
            self.gone = reason
            execution = self.execution
        if execution is not None:
            execution.kill(reason)


CLOSED = object()  # what a kept channel's callback is given when the channel closes (both sides)


def serve_jobs(channel: Any) -> None:
    """A kept channel: ("run", number, spec as JSON) one after another, each answered as
    `run_job` does; ("kill", number, reason) stops that job if it is the one running.

    Messages are taken by a callback on execnet's receiving thread (a kill acts at once, a
    job is queued for this thread), not by a thread of our own reading the channel: one
    thread hand-off less per job on the host."""
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    current = _Current()

    def heard(message: Any) -> None:
        if message is CLOSED:  # the coordinator closed the channel, or the connection dropped
            current.end("the connection to the coordinator dropped")
            jobs.put(None)
        elif message[0] == "run":
            jobs.put((message[1], message[2]))
        elif message[0] == "kill":
            current.kill(message[1], str(message[2]))

    channel.setcallback(heard, endmarker=CLOSED)
    while (job := jobs.get()) is not None:
        number, spec = job

        def attach(execution: Any, number: int = int(number)) -> None:
            current.attach(number, execution)

        run_job(channel, json.loads(spec), attach)


def serve(channel: Any) -> None:
    message = channel.receive()
    if message[0] == "install":
        started = time.monotonic()
        install(message[1])
        # in the module the job channels import: this copy runs as `__channelexec__`
        sys.modules[ITSELF].claim(*message[2:4])  # the site, and its containment
        channel.send(("ready", about(), time.monotonic() - started))
    elif message[0] == "jobs":
        serve_jobs(channel)
    elif message[0] == "ping":
        channel.send(("pong", about()))
    elif message[0] == "close":
        close()


if __name__ == "__channelexec__":
    serve(globals()["channel"])
