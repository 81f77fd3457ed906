"""A job never outlives its worker: a small process of the worker's own kills the process
groups of the jobs still running when the worker dies, however it dies (SIGKILL, a crash, the
out-of-memory killer), within NAP seconds: SIGTERM, then SIGKILL GRACE seconds later. Where the
jobs are followed by cgroups (worker/tracking.py), every process in those is ended too, the
ones that left their job's group included.

The worker tells it each job's process group as the job starts and again when the job has
ended, and the directory of its jobs' cgroups once, over a pipe. Only the worker holds the
pipe's writing end (close-on-exec: no job inherits it), so the end of the pipe is the worker's
death. Standard library only, run as its
own file without importing corral: it costs a few megabytes and starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection

log = logging.getLogger("corral.worker")

GRACE = 2.0  # seconds the jobs get between SIGTERM and SIGKILL once their worker is gone
# between two reads of the pipe: the lines wait in it meanwhile (tens of thousands fit), so a
# worker running hundreds of jobs a second wakes this process a few times a second, not at
# every start and end (on a fleet host, twenty such processes share the machine with the
# jobs), and its death is seen this much later at most
NAP = 0.25
PIPE_SIZE = 1024 * 1024  # asked for; the kernel's default (64 KiB) holds over 6,000 lines


class Watchdog:
    """The worker's side: `watch(pgid)` when a job's process group starts, `forget(pgid)` once
    it has ended. The process starts with the first job, so that a worker that never runs one
    has none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._cgroups: set[str] = set()

    def watch(self, pgid: int) -> None:
        self._say(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        self._say(f"-{pgid}\n")

    def watch_cgroup(self, path: str) -> None:
        """Every process in the groups below the cgroup at `path` is a job's (told once)."""
        with self._lock:
            told = path in self._cgroups
            self._cgroups.add(path)
        if not told:
            self._say(f"c{path}\n")

    def _say(self, line: str) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._proc is None:
                    self._start_locked()
                os.write(self._fd, line.encode())  # a few bytes: one atomic write to the pipe
            except (OSError, subprocess.SubprocessError) as exc:
                # it could not start, or died (it never should): jobs are not watched from now
                # on, and the worker goes on; never an error for the job being started
                log.error("no job watchdog (%s): jobs may outlive this worker", exc)
                self._closed = True

    def _start_locked(self) -> None:
        readable, writable = os.pipe()  # both close-on-exec
        with contextlib.suppress(OSError, AttributeError):  # Linux, up to its pipe-max-size
            fcntl.fcntl(writable, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", *_program()],
                stdin=readable,
                stdout=subprocess.DEVNULL,
                # a session of its own: a Ctrl-C at the worker's terminal does not end it before
                # the worker has stopped its jobs itself
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(writable)
            raise
        finally:
            os.close(readable)
        self._fd = writable

    def close(self) -> None:
        """The worker stops, its jobs ended: the watchdog finds nothing to kill and leaves.

        The cgroups are the whole process's, shared with any other worker in it that goes on
        running: they are taken off its list first."""
        with self._lock:
            self._closed = True
            proc, self._proc = self._proc, None
            if proc is None:
                return
            with contextlib.suppress(OSError):
                for path in self._cgroups:
                    os.write(self._fd, f"u{path}\n".encode())
                os.close(self._fd)
        try:
            proc.wait(GRACE + 5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _program() -> list[str]:
    """This file; or, on a fleet host, where corral was shipped and not installed
    (fleet/remote.py keeps the source it was given), its source."""
    shipped = globals().get("__corral_source__")
    if isinstance(shipped, str):
        return ["-c", shipped]
    return [os.path.abspath(__file__)]


def main() -> None:
    """Read `+PGID`, `-PGID`, `cPATH` and `uPATH` lines until the worker's end of the pipe
    closes, then end the groups still listed and the processes in the cgroups: SIGTERM, and
    SIGKILL for what is left after GRACE seconds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the pipe's end ends it
    groups: set[int] = set()
    cgroups: set[str] = set()
    pending = b""
    while chunk := os.read(0, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
            elif line[:1] == b"c":
                cgroups.add(os.fsdecode(line[1:]))
            elif line[:1] == b"u":
                cgroups.discard(os.fsdecode(line[1:]))
        time.sleep(NAP)
    _end(groups, cgroups)


def _end(groups: set[int], cgroups: Collection[str] = ()) -> None:
    alive = {g for g in groups if _signal(g, signal.SIGTERM)}
    members = _members(cgroups)
    for pid in members:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while (alive or members) and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {g for g in alive if _signal(g, 0)}
        members = _members(cgroups)
    for g in alive:
        _signal(g, signal.SIGKILL)
    for _ in range(50):  # again while what is killed forks
        members = _members(cgroups)
        if not members:
            break
        for pid in members:
            _kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _members(cgroups: Collection[str]) -> list[int]:
    """The processes in the groups below these cgroups: the jobs'. A pool's directory itself
    holds none of them (in cgroup v2 it holds the worker's own, and maybe this watchdog)."""
    pids: list[int] = []
    for path in cgroups:
        for top, _dirs, _files in os.walk(path):
            if top == path:
                continue
            for name in ("cgroup.procs", "cgroup.threads"):  # v2 threaded groups: threads only
                try:
                    with open(os.path.join(top, name)) as f:
                        # a thread's id stands for its process: kill() ends the whole process
                        pids += [int(x) for x in f.read().split() if x.isdigit()]
                    break
                except OSError:
                    continue
    return list(dict.fromkeys(pids))


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _signal(pgid: int, sig: int) -> bool:
    """Whether the group still had a process to take the signal."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # a job run as another user that the worker could not signal either
    return True


if __name__ == "__main__":
    main()
