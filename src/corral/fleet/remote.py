"""What runs on a fleet host: the executor behind an execnet channel (standard library only).

Shipped with `gateway.remote_exec(this module)`; nothing is installed on the host. The first
channel of a connection brings the executor's source, and this module's own, and keeps them in
the remote interpreter's `sys.modules`; each job then gets a channel of its own that imports
it from there. The job dies with its channel: when the channel or the whole connection goes,
its process group is killed. Working directories left as made are kept for the next jobs of
the connection and removed when it closes.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import threading
import time
import types
from typing import Any

EXECUTOR = "corral.worker.executor"
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
        sys.modules[name] = module  # before exec: dataclasses look their module up by name
        exec(compile(source, module.__file__, "exec"), module.__dict__)


def about() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "hostname": platform.node(),
        "pid": os.getpid(),
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


def workdirs() -> Any:
    from corral.worker.workdirs import Workdirs  # shipped by install()

    if not _kept:
        _kept.append(Workdirs())
    return _kept[0]


def run_job(channel: Any, spec: dict[str, Any]) -> None:
    """Run one job; stream ("out", stream, ts, data), end with ("end", result, shared)."""
    from corral.worker.executor import ExecSpec, Execution  # shipped by install()

    fd, output_path = tempfile.mkstemp(prefix="corral-output-")
    os.close(fd)
    env = dict(spec.get("env") or {})
    env["CORRAL_OUTPUT"] = output_path
    argv = spec.get("argv")
    execution = Execution(
        ExecSpec(
            command=spec.get("command"),
            argv=tuple(argv) if argv else None,
            env=env,
            timeout=spec.get("timeout"),
            grace=float(spec.get("grace", 5.0)),
            log_limit=int(spec.get("log_limit", 16 * 1024 * 1024)),
            mask=tuple(spec.get("mask") or ()),
            sudo_password=spec.get("sudo_password"),
            workdirs=workdirs(),
        ),
        lambda c: _send(channel, ("out", c.stream, c.ts, c.data)),
    )

    def watch() -> None:
        # the coordinator's word, or the end of the channel (it hung up, or the connection
        # dropped): either way the job must not outlive it
        reason = "the connection to the coordinator dropped"
        try:
            while True:
                message = channel.receive()
                if isinstance(message, tuple) and message and message[0] == "kill":
                    reason = str(message[1])
                    break
        except Exception:
            pass
        execution.kill(reason)

    threading.Thread(target=watch, name="corral-watch", daemon=True).start()
    try:
        result = execution.run()
        try:
            with open(output_path, encoding="utf-8", errors="replace") as f:
                shared = parse_shared(f.read(MAX_SHARED))
        except OSError:
            shared = {}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(output_path)
    _send(
        channel,
        (
            "end",
            {
                "outcome": result.outcome,
                "exit_code": result.exit_code,
                "reason": result.reason,
                "started_at": result.started_at,
                "finished_at": result.finished_at,
                "resources": dict(result.resources),
                "output_bytes": result.output_bytes,
                "truncated": result.truncated,
            },
            shared,
        ),
    )


def _send(channel: Any, message: tuple[Any, ...]) -> None:
    with contextlib.suppress(Exception):  # a closed channel: the watcher stops the job
        channel.send(message)


def serve(channel: Any) -> None:
    message = channel.receive()
    if message[0] == "install":
        started = time.monotonic()
        install(message[1])
        channel.send(("ready", about(), time.monotonic() - started))
    elif message[0] == "run":
        run_job(channel, message[1])
    elif message[0] == "ping":
        channel.send(("pong", about()))
    elif message[0] == "close" and _kept:
        _kept[0].close()


if __name__ == "__channelexec__":
    serve(globals()["channel"])
