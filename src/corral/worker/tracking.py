"""Every process a job starts ends with the job, even one that left its process group (`setsid`,
a daemonizing server): the job is born in a cgroup of its own, and whatever is still in it when
the job's main process has exited is killed (stdlib only).

Where: a cgroup v1 `pids` hierarchy this process may create groups in (root, most often; a
cgroup v2 delegate would need a cgroup free of processes to nest under). Elsewhere the job's
process group is all that is killed, as before; sandboxed jobs have their PID namespace too.

How: the worker keeps a pool of groups, `corral-PID-jobs/N`, one per job running at once. The
thread that starts a job moves itself (in v1 a thread can move alone) into a free group for the
moment of the spawn and back, so the job is born inside: no window in which it could fork
before being moved, and no wrapper process. At the end, one read of `pids.current` tells
whether anything is left; only then are its processes listed and killed. The two moves are the
cost: some tens of microseconds of the worker's CPU a job, in the kernel (docs/architecture.md).

A job that must leave something running hands it to the machine's service manager
(`systemd-run`, say), whose processes are not in the job's group.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import re
import threading
from collections.abc import Iterator

from corral.worker.limits import kill_members, offer

log = logging.getLogger("corral.worker")

# the worker's pool is `corral-PID-jobs`; limits.py names its groups `corral-PID-…` too
_OWNED = re.compile(r"corral-(\d+)-")
# the calling thread, as `tasks` reads it: the kernel then moves that thread alone and need not
# stop every fork in the system meanwhile, as it does to move a thread named by its id
_ME = b"0"


class Track:
    """One group of the pool, for one job at a time."""

    def __init__(self, path: str, home: int) -> None:
        self.path = path
        self._home = home  # the worker's own group's `tasks`, to move the thread back
        self._tasks = os.open(os.path.join(path, "tasks"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            self._current = os.open(os.path.join(path, "pids.current"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(self._tasks)
            raise
        self.killed = 0  # processes the last `end` found left behind and killed

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """The calling thread inside this group while it starts the job's process."""
        try:
            os.write(self._tasks, _ME)
        except OSError as exc:  # the job runs all the same, followed by its process group alone
            log.warning("could not start a job in %s: %s", self.path, exc)
            yield
            return
        try:
            yield
        finally:
            os.write(self._home, _ME)

    def end(self, pgid: int | None = None) -> bool:
        """Kill what the job left in the group; whether the group is empty now (it may hold
        zombies whose new parent does not reap them, and is then not used again). `killed`
        counts the processes that had left the job's process group `pgid` (the rest were
        already killed with it, and may not have finished dying)."""
        if self._count() == 0:
            return True
        self.killed += kill_members(self.path, pgid)
        return self._count() == 0

    def _count(self) -> int:
        text = os.pread(self._current, 32, 0).strip()
        return int(text) if text.isdigit() else -1

    def close(self) -> None:
        if self._tasks >= 0:
            os.close(self._tasks)
            os.close(self._current)
            self._tasks = self._current = -1
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


class Tracker:
    """The process's pool of groups: made at its first job, released when its workers stop."""

    def __init__(self, parent: str) -> None:
        sweep(parent)
        self.root = os.path.join(parent, f"corral-{os.getpid()}-jobs")
        if os.path.isdir(self.root):  # a dead process's of our pid: sweep took it for ours
            kill_members(self.root)
            remove_tree(self.root)
        os.mkdir(self.root)
        self._home = os.open(os.path.join(parent, "tasks"), os.O_WRONLY | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._free: list[Track] = []
        self._all: list[Track] = []
        self._made = 0

    def take(self) -> Track:
        with self._lock:
            if self._free:
                track = self._free.pop()
                track.killed = 0
                return track
            self._made += 1
            path = os.path.join(self.root, str(self._made))
            if not self._all:
                os.makedirs(self.root, exist_ok=True)  # released when the last worker stopped
            os.mkdir(path)
            track = Track(path, self._home)
            self._all.append(track)
            return track

    def give_back(self, track: Track) -> None:
        """The job has ended: kill what it left, and keep the group for the next job if empty."""
        if track.end():
            with self._lock:
                self._free.append(track)
            return
        # Zombies the job's orphans became, where their new parent does not reap them (some
        # containers' init): counted until reaped, so the group could no longer tell a job that
        # left nothing from one that did. The next job gets a fresh group.
        track.close()
        if not os.path.isdir(track.path):
            with self._lock:
                self._all.remove(track)

    def release(self) -> None:
        """A worker stops, its jobs ended: remove the groups no job is in (another worker of
        this process may still be running some), and the pool's directory once it is empty. The
        pool is made again if a job comes after all."""
        with self._lock:
            free, self._free = self._free, []
            for track in free:
                self._all.remove(track)
                track.close()
            with contextlib.suppress(OSError):
                os.rmdir(self.root)


def sweep(parent: str) -> None:
    """Remove the groups a dead corral process left under `parent` (killed outright, its
    watchdog with it), ending the processes still in them."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        m = _OWNED.match(name)
        if m is None or _alive(int(m.group(1))):
            continue
        path = os.path.join(parent, name)
        kill_members(path)
        remove_tree(path)


def remove_tree(path: str) -> None:
    """rmdir the group at `path` and those below it, deepest first (a cgroup's files are the
    kernel's: only the directories are removed)."""
    for top, dirs, _files in os.walk(path, topdown=False):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(top, d))
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


_tracker: list[Tracker | None] = []
_tracker_lock = threading.Lock()


def tracker() -> Tracker | None:
    """This process's pool, or None where no cgroup can be made (as `describe` says)."""
    if _tracker:
        return _tracker[0]
    with _tracker_lock:
        if not _tracker:
            _tracker.append(_make())
    return _tracker[0]


def _make() -> Tracker | None:
    found = offer()
    if found.memory_cgroup is not None:
        sweep(found.memory_cgroup)  # limits.py's groups of a dead worker
    parent = found.pids_cgroup
    if parent is None:
        return None
    try:
        made = Tracker(parent)
    except OSError as exc:
        log.warning(
            "jobs' processes not followed by a cgroup (%s): only their group is killed", exc
        )
        return None
    # Not always run (`corral serve` ends as its SIGTERM would, after a graceful stop): each
    # worker releases the pool when it stops, and a dead process's is swept by the next.
    atexit.register(made.release)
    return made


def describe() -> str:
    """How what a job leaves running is ended on this machine, for a worker to say as it starts
    (and, where a pool can be made, the pool is made and a dead worker's groups swept now)."""
    if tracker() is not None:
        return "a job's processes end with it (its process group, and a cgroup v1 pids group)"
    return (
        "a job's process group ends with it (no writable cgroup v1 pids hierarchy: a process "
        "that leaves the group outlives the job)"
    )


def release() -> None:
    """The worker stops: see `Tracker.release` (nothing, if no job was ever followed)."""
    if _tracker and _tracker[0] is not None:
        _tracker[0].release()
