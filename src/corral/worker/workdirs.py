"""Working directories a worker's attempts left as they were made, kept for the next ones.

Making an attempt's directory (and its `tmp/`) and removing both afterwards costs more than
a short job: on a disk mounted with `discard`, each removal waits for the device. A directory
that is exactly as it was made (owned by the worker, 0700, holding nothing but the empty
directories it was made with) is as fresh as a new one, so it is handed to the next attempt.
Anything else is removed as before. What is kept is removed when the worker stops.

A worker that dies (SIGKILL, a crash) leaves the directories of the jobs it was running; the
next worker to hold the same root removes them (`claim_root`). `corral serve` holds its home's
`work/`; a `corral worker` holds a directory of its own name (`worker_root`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass

MODE = 0o700
KEEP = 8  # spare directories per root: enough for the slots of one worker
LOCK = ".corral-worker.lock"  # held by the live worker whose root it is
# how the executor, the task pool and a fleet host's outputs name what they make
MADE = ("attempt-", "corral-task-", "corral-outputs-")
WORKER = "corral-worker-"  # a `corral worker`'s own root, by its name (`worker_root`)


class Workdirs:
    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._spare: dict[str, list[str]] = {}  # root -> directories ready for an attempt
        self._closed = False

    def take(self, root: str) -> str | None:
        """A kept directory under `root`, or None (then make a new one)."""
        with self._lock:
            found = self._spare.get(root)
            return found.pop() if found else None

    def give(self, root: str, path: str, skeleton: Sequence[str]) -> bool:
        """Keep `path` when it holds just the empty directories `skeleton`, all as made;
        False when it does not qualify (the caller removes it)."""
        if not _as_left(path, skeleton):
            return False
        with self._lock:
            if self._closed:
                return False
            kept = self._spare.setdefault(root, [])
            if len(kept) >= self.keep:
                return False
            kept.append(path)
        return True

    def close(self) -> None:
        """Remove every kept directory; later ones are not kept."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, {}
        for paths in spare.values():
            for path in paths:
                shutil.rmtree(path, ignore_errors=True)


def claim_root(root: str) -> int | None:
    """Hold `root` for this worker's life and clear what an earlier worker left in it.

    The hold is a lock on a file in `root`, which the kernel lets go of however the process
    ends. Holding it, no live worker uses `root`, so the directories the executor and the task
    pool made there are leftovers of a worker that died: they are removed. Returns the lock's
    descriptor, kept open for the worker's life; None when another live worker holds `root`
    (then nothing is removed)."""
    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    with os.scandir(root) as entries:
        left = [
            e.path for e in entries if e.name.startswith(MADE) and e.is_dir(follow_symlinks=False)
        ]
    for path in left:
        remove_workdir(path)
    return fd


@dataclass(frozen=True)
class WorkerRoot:
    """Where a `corral worker` makes its attempts' directories, held for its life."""

    path: str
    lock: int  # the descriptor `claim_root` holds
    spare: bool  # not the worker's usual root (that one was taken): removed when it stops
    # the usual root is held by a live process of the same name on this machine
    namesake: bool = False

    def release(self) -> None:
        os.close(self.lock)
        if self.spare:
            shutil.rmtree(self.path, ignore_errors=True)


def own_root(base: str, name: str) -> str:
    """The worker `name`'s own root under `base`, absolute: the attempts' and task processes'
    directories go under it."""
    return os.path.join(os.path.abspath(base), WORKER + name)


def worker_root(base: str, name: str, mode: int = MODE) -> WorkerRoot:
    """The root under `base` for the worker `name`: `base/corral-worker-NAME`, claimed
    (`claim_root`), so the same worker started again clears what its dead process left there
    and no other worker's directories are touched. `base` may be the shared temp directory:
    when that name is not a directory of this account's (someone else made it, or it is a
    link), or another live process of the same name holds it, the worker takes a fresh
    directory beside it instead. `mode` 0711 lets jobs run as another user reach their own
    directories without listing the others. OSError when `base` cannot hold one."""
    path = own_root(base, name)
    base = os.path.dirname(path)
    os.makedirs(base, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    st = os.lstat(path)
    namesake = False
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)
        fd = claim_root(path)
        if fd is not None:
            return WorkerRoot(path, fd, spare=False)
        namesake = True
    spare = tempfile.mkdtemp(prefix=f"{WORKER}{name}-", dir=base)
    os.chmod(spare, mode)
    fd = claim_root(spare)
    assert fd is not None  # new, and ours alone
    return WorkerRoot(spare, fd, spare=True, namesake=namesake)


def remove_workdir(path: str, skeleton: Sequence[str] = ()) -> None:
    """Remove a working directory and everything in it, directories a job left without write
    or search permission too. Most attempts leave it as made (`skeleton` inside): a few rmdir
    calls are then far cheaper than rmtree's walk."""
    try:
        for name in skeleton:
            os.rmdir(f"{path}/{name}")
        os.rmdir(path)
        return
    except OSError:
        pass
    try:
        shutil.rmtree(path)
        return
    except OSError:
        pass
    for top, dirs, _ in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(top, name), 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _as_left(path: str, skeleton: Sequence[str]) -> bool:
    """True when `path` and each of its `skeleton` directories is as made, and nothing else is
    in them. Written out in one function: it runs after every attempt, just after the job's
    process has run on this CPU, when each extra call and lookup costs several times more."""
    uid = os.getuid()
    try:
        if not _as_made(os.lstat(path), uid):
            return False
        if sorted(os.listdir(path)) != sorted(skeleton):
            return False
        for name in skeleton:
            sub = f"{path}/{name}"
            if not _as_made(os.lstat(sub), uid) or os.listdir(sub):
                return False
    except OSError:
        return False
    return True


def _as_made(st: os.stat_result, uid: int) -> bool:
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and stat.S_IMODE(st.st_mode) == MODE
