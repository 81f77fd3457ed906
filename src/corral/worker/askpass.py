"""sudo's password for one job: sudo -A runs a helper that gets it from the executor (stdlib only).

Why this way and not a pseudo-terminal that types the password at sudo's prompt: nothing has to
watch the job's output for a prompt, the job's stdout and stderr stay plain pipes, and the
password never passes through them, so it cannot reach a log even by accident. Why a socket
and not an environment variable, a file or an inherited pipe: the job's environment is the
job's to print, a file would put the password on disk, and sudo closes inherited descriptors
before it runs the helper (a pipe would also be empty after the first `sudo`).

So the job runs with a private folder first in its PATH holding:
- `sudo`: runs the real sudo with `-A`, so sudo asks the helper instead of a terminal;
- `askpass`: the helper (SUDO_ASKPASS), a few lines of Python that read the password from
- `socket`: a Unix socket the executor listens on while the job runs. It answers only
  processes of the job's own session (the job is a session leader; sudo and its helper stay
  in that session) and of the job's user; anything else gets nothing.
The folder is the job's user's, mode 0700, and removed when the job ends. A password is one
line (sudo reads one line from the helper).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading

_WAIT_FOR_PID = 10.0  # seconds an early ask waits for the executor to learn the job's pid


class SudoAskpass:
    def __init__(self, password: str, user: tuple[int, int] | None = None) -> None:
        self._password = password.encode()
        self._user = user
        self._uid = user[0] if user is not None else os.getuid()
        self._pid: int | None = None
        self._bound = threading.Event()
        self._closed = threading.Event()
        self._dir = ""
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never the password, even in a traceback
        return f"SudoAskpass(dir={self._dir!r})"

    def start(self, env: dict[str, str]) -> None:
        """Make the folder, listen, and point the job's PATH and SUDO_ASKPASS at it."""
        path = env.get("PATH") or os.defpath
        real = shutil.which("sudo", path=path)
        # short: a Unix socket's path has to fit in about 100 bytes
        self._dir = tempfile.mkdtemp(prefix="corral-sudo-")
        sock_path = os.path.join(self._dir, "socket")
        helper = os.path.join(self._dir, "askpass")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server = server
        server.bind(sock_path)
        os.chmod(sock_path, 0o600)
        server.listen(8)
        server.settimeout(0.2)
        _write(
            helper,
            f"#!{_python(self._user, path)} -I\n"
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            f"s.connect({sock_path!r})\n"
            "data = b''\n"
            "while True:\n"
            "    chunk = s.recv(4096)\n"
            "    if not chunk:\n"
            "        break\n"
            "    data += chunk\n"
            "if not data:\n"
            "    sys.exit(1)\n"
            "sys.stdout.buffer.write(data + b'\\n')\n",
        )
        if real is not None:
            # sudo missing on the host: the job's `sudo` fails as it would without corral
            _write(
                os.path.join(self._dir, "sudo"),
                "#!/bin/sh\n"
                f"SUDO_ASKPASS={_quote(helper)}\n"
                "export SUDO_ASKPASS\n"
                f'exec {_quote(real)} -A "$@"\n',
            )
        if self._user is not None:
            for name in (
                self._dir,
                sock_path,
                *(os.path.join(self._dir, n) for n in os.listdir(self._dir)),
            ):
                os.chown(name, *self._user)
        env["PATH"] = f"{self._dir}{os.pathsep}{path}"
        env["SUDO_ASKPASS"] = helper  # for a job that runs `/usr/bin/sudo -A` itself
        self._thread = threading.Thread(target=self._serve, name="corral-askpass", daemon=True)
        self._thread.start()

    def bind(self, pid: int) -> None:
        """The job's process (its session leader) has started."""
        self._pid = pid
        self._bound.set()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._server is not None:
            self._server.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        while not self._closed.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5.0)
                with contextlib.suppress(OSError):
                    if self._allowed(conn):
                        conn.sendall(self._password)

    def _allowed(self, conn: socket.socket) -> bool:
        """Only the job's user, from inside the job's session (Linux: the peer's pid)."""
        if not self._bound.wait(_WAIT_FOR_PID) or self._pid is None:
            return False
        peercred = getattr(socket, "SO_PEERCRED", None)
        if peercred is None:
            return True  # no peer credentials here: the folder's mode 0700 is the guard
        pid, uid, _gid = struct.unpack(
            "3i", conn.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
        )
        return uid == self._uid and _session(pid) == self._pid


def _python(user: tuple[int, int] | None, path: str) -> str:
    """An interpreter the job's user can run: this one's real file (a virtualenv's link may sit
    in a folder that user cannot enter), else a python3 on the job's PATH. The helper needs
    nothing but the standard library."""
    here = os.path.realpath(sys.executable)
    if user is None:
        return here
    found = shutil.which("python3", path=path)
    for candidate in (here, *([os.path.realpath(found)] if found else []), "/usr/bin/python3"):
        if _runnable_by(candidate, *user):
            return candidate
    return here  # the helper then fails, and so does the job's sudo, saying why


def _runnable_by(path: str, uid: int, gid: int) -> bool:
    """Whether uid/gid may execute `path` (every folder on the way searchable too)."""
    folders = []
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        folders.append(parent)
        parent = os.path.dirname(parent)
    for name in (path, *folders):
        try:
            st = os.stat(name)
        except OSError:
            return False
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid == gid:
            bit = 0o010
        else:
            bit = 0o001
        if uid != 0 and not st.st_mode & bit:
            return False
    return True


def _session(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # after the command name in parentheses: state, ppid, pgrp, session
    return int(stat[stat.rindex(")") + 2 :].split()[3])


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
