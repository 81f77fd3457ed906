"""Working directories a worker's attempts left as they were made, kept for the next ones.

Making an attempt's directory (and its `tmp/`) and removing both afterwards costs more than
a short job: on a disk mounted with `discard`, each removal waits for the device. A directory
that is exactly as it was made (owned by the worker, 0700, holding nothing but the empty
directories it was made with) is as fresh as a new one, so it is handed to the next attempt.
Anything else is removed as before. What is kept is removed when the worker stops.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Sequence

MODE = 0o700
KEEP = 8  # spare directories per root: enough for the slots of one worker


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
