"""The bubblewrap sandbox for code jobs: find `bwrap`, check it works here, build its argv (stdlib only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sandbox:
    """How one attempt is boxed: the host's network or none, and paths the job must not see."""

    bwrap: str
    network: bool = False
    hide: tuple[str, ...] = ()  # directories replaced by an empty tmpfs (worker state, homes)


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def find_python() -> str:
    """The system's interpreter for code jobs: a virtualenv's or one under a home directory
    may be out of the job user's reach, or hidden by the sandbox."""
    return shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin") or sys.executable


def check(bwrap: str | None, user: tuple[int, int] | None = None) -> str:
    """ "" when bwrap can build a sandbox on this machine; otherwise why not, for people.

    Unprivileged user namespaces may be switched off (sysctl, seccomp in a container), in which
    case bwrap exists but fails: try it once, as the user jobs will run as.
    """
    if not bwrap:
        return "bwrap (bubblewrap) is not installed; Debian/Ubuntu: apt-get install bubblewrap"
    argv = argv_for(Sandbox(bwrap), "/", "", ["/bin/true"])
    uid, gid = user if user is not None else (None, None)
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=30,
            check=False,
            user=uid,
            group=gid,
            extra_groups=[] if user is not None else None,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap could not start: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        return f"bwrap cannot build a sandbox here: {why}"
    return ""


def hidden_paths(*candidates: str) -> tuple[str, ...]:
    """The existing directories among `candidates` that a sandbox can cover (never / itself)."""
    out: list[str] = []
    for path in candidates:
        if not path:
            continue
        real = os.path.realpath(path)
        if real != "/" and os.path.isdir(real) and real not in out:
            out.append(real)
    return tuple(out)


def argv_for(box: Sandbox, workdir: str, inputs: str, command: Sequence[str]) -> list[str]:
    """The bwrap command line that runs `command` in `workdir`, nothing else writable, `inputs`
    read-only, new namespaces, no network unless asked. Paths inside are those outside."""
    argv = [box.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--tmpfs", "/tmp"]
    for path in box.hide:
        # an empty directory over the worker's own state: its credential, other attempts' files
        if path and os.path.isabs(path) and path != "/":
            argv += ["--tmpfs", path]
    argv += ["--bind", workdir, workdir]
    if inputs:
        argv += ["--ro-bind", inputs, inputs]
    argv += ["--chdir", workdir]
    argv += ["--unshare-all"]
    if box.network:
        argv += ["--share-net"]
    # the job dies with the worker, cannot reach the worker's terminal, and is pid 1's child
    # in its own PID namespace: when it ends, everything it started ends with it
    argv += ["--die-with-parent", "--new-session"]
    argv += ["--setenv", "HOME", workdir, "--setenv", "TMPDIR", "/tmp"]
    argv += ["--", *command]
    return argv
