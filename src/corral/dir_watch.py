"""Whether anything in a few directories may have changed since the last look.

The task registry looks at its files on every submit and lease (a new version of a task file
reaches the next job at once), a directory scan and a `stat` a file: about 0.1 ms of a
submit's time in a busy server. On Linux the kernel can say instead, in one system call,
whether anything was written, made, removed or renamed there since (inotify, through
`inotify_simple`): the event is queued by the write itself, so a look after a write always
sees it. Elsewhere, for a directory that cannot be watched (missing, or the kernel's limit on
watches reached), and at least once a second (a network filesystem changed by another machine
queues nothing here), the answer is "maybe", and the caller looks.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("corral.dir_watch")

# at least this often the answer is "maybe" anyway (seconds)
RECHECK = 1.0

try:
    if sys.platform != "linux":
        raise ImportError("inotify is Linux's")
    from inotify_simple import INotify, flags

    _MASK = (
        flags.CREATE
        | flags.DELETE
        | flags.MODIFY
        | flags.CLOSE_WRITE
        | flags.ATTRIB
        | flags.MOVED_FROM
        | flags.MOVED_TO
        | flags.DELETE_SELF
        | flags.MOVE_SELF
    )
except ImportError:  # another platform, or the library is not installed: always look
    INotify = None


class DirWatch:
    """Thread-compatible: the caller holds its own lock around `may_have_changed` and the
    look that follows it."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = list(dict.fromkeys(dirs))
        self._inotify: Any = None
        self._watched: dict[int, Path] = {}  # watch descriptor -> directory
        self._looked_at = 0.0  # when "maybe" was last answered
        if INotify is None or not self.dirs:
            return
        try:
            self._inotify = INotify(nonblocking=True)
        except OSError as exc:  # the per-user limit on instances: look every time
            log.info("not watching task directories (%s): they are scanned on every look", exc)
            return
        weakref.finalize(self, self._inotify.close)

    def may_have_changed(self) -> bool:
        """False only if nothing in the directories can have changed since the last True.

        A True clears what was heard so far: whatever changes during the caller's look is
        heard at the next call."""
        if self._inotify is None:
            return True
        try:
            heard = self._inotify.read(timeout=0)
        except OSError as exc:  # not expected; the caller's look must not fail for it
            log.warning("reading the task directories' watch failed (%s): looking", exc)
            return True
        for event in heard:
            if event.mask & flags.IGNORED:  # that watch is gone (the directory went)
                self._watched.pop(event.wd, None)
        now = time.monotonic()
        if heard or len(self._watched) < len(self.dirs) or now - self._looked_at >= RECHECK:
            self._watch_missing()
            self._looked_at = now
            return True
        return False

    def _watch_missing(self) -> None:
        watching = set(self._watched.values())
        for d in self.dirs:
            if d in watching:
                continue
            with contextlib.suppress(OSError):  # not there (yet), or no watches left
                self._watched[self._inotify.add_watch(d, _MASK)] = d
