"""Every process a job starts ends with the job, even one that left its process group (`setsid`,
a daemonizing server): the job is born in a cgroup of its own, and whatever is still in it when
the job's main process has exited is killed (stdlib only).

Where: a cgroup v1 `pids` hierarchy this process may create groups in (root, most often), or
else a cgroup v2 hierarchy whose cgroup of ours we may create groups in (root, or a delegated
service). Elsewhere, or with `CORRAL_CONTAINMENT=process-group`, the job's process group is all
that is killed, as before; sandboxed jobs have their PID namespace too.

How: the worker keeps a pool of groups, `corral-PID-jobs/N`, one per job running at once. The
thread that starts a job moves itself alone into a free group for the moment of the spawn and
back, so the job is born inside: no window in which it could fork before being moved, and no
wrapper process. In v1 any thread can move alone. In v2 only within a threaded subtree: the
worker's process moves into the pool's directory, whose groups are made `threaded`, and its
threads move between them (no controller is needed for that, and none is used). At the end, one
read (`pids.current`; v2's `cgroup.events`) tells whether anything is left; only then are its
processes listed and killed. The two moves are the cost: some tens of microseconds of the
worker's CPU a job, in the kernel (docs/architecture.md).

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
from collections.abc import Callable, Iterator

from corral.worker.limits import kill_members, offer, read_lines

log = logging.getLogger("corral.worker")

# what ends a job's processes: `auto` (a cgroup v1 pids group, else a cgroup v2 group, else the
# process group alone), one of them by name, or `process-group` to have no cgroup at all (a
# job's daemon, started with setsid, then outlives it)
CONTAINMENT_ENV = "CORRAL_CONTAINMENT"
CONTAINMENTS = ("auto", "cgroup-v1", "cgroup-v2", "process-group")

# the worker's pool is `corral-PID-jobs`; limits.py names its groups `corral-PID-…` too
_OWNED = re.compile(r"corral-(\d+)-")
# the calling thread, as `tasks` reads it: the kernel then moves that thread alone and need not
# stop every fork in the system meanwhile, as it does to move a thread named by its id
_ME = b"0"
# a v2 group's thread list (to move a thread in) and its events (`populated 0` once empty)
_V2_FILES = ("cgroup.threads", "cgroup.events")


class Track:
    """One group of the pool, for one job at a time."""

    def __init__(self, path: str, home: int, version: int = 1) -> None:
        self.path = path
        self.version = version
        # the worker's own group's thread list, to move the thread back
        self._home = home
        moves, counts = ("tasks", "pids.current") if version == 1 else _V2_FILES
        self._tasks = os.open(os.path.join(path, moves), os.O_WRONLY | os.O_CLOEXEC)
        try:
            self._current = os.open(os.path.join(path, counts), os.O_RDONLY | os.O_CLOEXEC)
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
        if self._empty():
            return True
        self.killed += kill_members(self.path, pgid)
        return self._empty()

    def _empty(self) -> bool:
        text = os.pread(self._current, 64, 0)
        if self.version == 1:  # a count, zombies included
            return text.strip() == b"0"
        return b"populated 0" in text  # v2 counts no zombie

    def close(self) -> None:
        if self._tasks >= 0:
            os.close(self._tasks)
            os.close(self._current)
            self._tasks = self._current = -1
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


class Tracker:
    """The process's pool of groups: made at its first job, released when its workers stop.

    `parent`: a cgroup v1 `pids` directory (`version` 1), or the cgroup v2 directory this process
    is in (`version` 2), under which the pool's directory is made."""

    def __init__(self, parent: str, version: int = 1) -> None:
        sweep(parent)
        self.parent = parent
        self.version = version
        self.root = os.path.join(parent, f"corral-{os.getpid()}-jobs")
        if os.path.isdir(self.root):  # a dead process's of our pid: sweep took it for ours
            kill_members(self.root)
            remove_tree(self.root)
        self._lock = threading.Lock()
        self._free: list[Track] = []
        self._all: list[Track] = []
        self._made = 0
        self._home = -1  # where a thread goes back to after a spawn
        self._inside = False  # v2: this process is in the pool's directory
        try:
            self._enter()
        except OSError:  # refused (v2: our own cgroup is a threaded one, say): nothing left
            remove_tree(self.root)
            raise

    def _enter(self) -> None:
        """Make the pool's directory (again, once released) and the way back from its groups."""
        os.makedirs(self.root, exist_ok=True)
        if self.version == 1:
            if self._home < 0:  # the worker stays in its own group
                self._home = os.open(os.path.join(self.parent, "tasks"), os.O_WRONLY | os.O_CLOEXEC)
            return
        if not self._inside:
            # a v2 thread moves alone only within its process's threaded subtree: the process
            # moves (once) into the pool's directory, which its threaded groups make the domain
            _write(os.path.join(self.root, "cgroup.procs"), _ME)
            self._inside = True
            self._home = os.open(
                os.path.join(self.root, "cgroup.threads"), os.O_WRONLY | os.O_CLOEXEC
            )

    def take(self) -> Track:
        with self._lock:
            if self._free:
                track = self._free.pop()
                track.killed = 0
                return track
            self._made += 1
            path = os.path.join(self.root, str(self._made))
            if not self._all:
                self._enter()  # released when the last worker stopped
            os.mkdir(path)
            try:
                if self.version == 2:
                    _write(os.path.join(path, "cgroup.type"), b"threaded")
                track = Track(path, self._home, self.version)
            except OSError:
                with contextlib.suppress(OSError):
                    os.rmdir(path)
                raise
            self._all.append(track)
            return track

    def give_back(self, track: Track) -> None:
        """The job has ended: kill what it left, and keep the group for the next job if empty."""
        if track.end():
            with self._lock:
                self._free.append(track)
            return
        # Zombies the job's orphans became, where their new parent does not reap them (some
        # containers' init): counted until reaped (v1), so the group could no longer tell a job
        # that left nothing from one that did. The next job gets a fresh group.
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
            if self._inside and not self._all:
                try:  # v2: out of the pool's directory, back where the process was
                    _write(os.path.join(self.parent, "cgroup.procs"), _ME)
                except OSError as exc:
                    log.warning("could not leave %s: %s", self.root, exc)
                    return
                self._inside = False
                os.close(self._home)
                self._home = -1
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


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


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
    choice = containment()
    tries: list[tuple[int, Callable[[], str | None]]] = []
    if choice in ("auto", "cgroup-v1"):
        tries.append((1, lambda: found.pids_cgroup))
    if choice in ("auto", "cgroup-v2"):
        tries.append((2, own_v2_cgroup))  # looked for only where v1 cannot be had
    for version, where in tries:
        parent = where()
        if parent is None:
            continue
        try:
            made = Tracker(parent, version)
        except OSError as exc:
            log.warning("jobs' processes not followed by a cgroup v%d (%s)", version, exc)
            continue
        # Not always run (`corral serve` ends as its SIGTERM would, after a graceful stop):
        # each worker releases the pool when it stops, and a dead process's is swept by the next.
        atexit.register(made.release)
        return made
    if choice.startswith("cgroup"):
        log.warning("%s=%s, but no such cgroup can be made here", CONTAINMENT_ENV, choice)
    return None


_chosen: list[str] = []  # a fleet host's `containment` from the inventory (`choose`)


def choose(choice: str) -> None:
    """What ends a job's processes in this process, in place of $CORRAL_CONTAINMENT; before the
    pool is made (a fleet host's Python is told at its connection's start)."""
    _chosen[:] = [choice]


def containment() -> str:
    """What the operator chose through `choose` or $CORRAL_CONTAINMENT (`auto` when neither
    says, or what they say is unknown)."""
    choice = (_chosen[0] if _chosen else os.environ.get(CONTAINMENT_ENV, "")).strip() or "auto"
    if choice not in CONTAINMENTS:
        log.warning("%s=%s is none of %s: auto", CONTAINMENT_ENV, choice, ", ".join(CONTAINMENTS))
        return "auto"
    return choice


def own_v2_cgroup() -> str | None:
    """The directory of this process's cgroup in a mounted cgroup v2 hierarchy, if we may
    create groups in it."""
    mount = _v2_mount()
    if mount is None:
        return None
    for line in read_lines("/proc/self/cgroup"):
        if line.startswith("0::"):
            root, point = mount
            path = line[3:]
            if root != "/" and (path == root or path.startswith(root + "/")):
                path = path[len(root) :]  # the mount shows a subtree (a container's own)
            candidate = os.path.join(point, path.lstrip("/"))
            if os.path.isdir(candidate) and os.access(candidate, os.W_OK):
                return candidate.rstrip("/") or "/"
    return None


def _v2_mount() -> tuple[str, str] | None:
    """(the root it shows, where it is mounted) of the cgroup v2 hierarchy, from mountinfo."""
    for line in read_lines("/proc/self/mountinfo"):
        fields = line.split()
        if "-" in fields:
            tail = fields[fields.index("-") + 1 :]
            if tail and tail[0] == "cgroup2" and len(fields) > 4:
                return _unescape(fields[3]), _unescape(fields[4])
    return None


def _unescape(field: str) -> str:
    # mountinfo writes a space, tab, newline or backslash in a path as an octal escape
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def describe() -> str:
    """How what a job leaves running is ended on this machine, for a worker to say as it starts
    (and, where a pool can be made, the pool is made and a dead worker's groups swept now)."""
    pool = tracker()
    if pool is not None:
        kind = "a cgroup v1 pids group" if pool.version == 1 else "a cgroup v2 threaded group"
        return f"a job's processes end with it (its process group, and {kind})"
    if containment() == "process-group":
        why = f"{CONTAINMENT_ENV}=process-group"
    else:
        why = "no cgroup this worker may create groups in"
    return f"a job's process group ends with it ({why}: a process that leaves the group outlives the job)"


def release() -> None:
    """The worker stops: see `Tracker.release` (nothing, if no job was ever followed)."""
    if _tracker and _tracker[0] is not None:
        _tracker[0].release()
