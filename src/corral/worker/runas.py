"""`--run-as USER`: the unprivileged account jobs run as, checked before the worker joins (stdlib only)."""

from __future__ import annotations

import os
import pwd
import stat
import tempfile


def resolve(name: str) -> tuple[int, int]:
    """(uid, gid) of USER; ValueError saying why it cannot be used."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"--run-as: no user {name!r} on this machine") from None
    if entry.pw_uid == 0:
        raise ValueError(f"--run-as: {name!r} is root; name an unprivileged user")
    if entry.pw_uid == os.geteuid():
        raise ValueError(f"--run-as: {name!r} is the worker's own account; name another user")
    if os.geteuid() != 0:
        raise ValueError("--run-as needs the worker to start as root (to switch to that user)")
    return entry.pw_uid, entry.pw_gid


def unreachable(workdir: str) -> str:
    """ "" if another user can reach working directories under `workdir`; else which parent stops it."""
    path = os.path.realpath(workdir or tempfile.gettempdir())
    while True:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = stat.S_IXOTH  # made by the worker on first use, with a searchable mode
        if not mode & stat.S_IXOTH:
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return ""
        path = parent
