"""Run one job attempt in its own process group and workdir, streaming output (stdlib only)."""

from __future__ import annotations

import codecs
import contextlib
import errno
import logging
import math
import os
import random
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from corral.worker.askpass import SudoAskpass
from corral.worker.limits import Applied
from corral.worker.limits import offer as limits_offer
from corral.worker.masking import Masker
from corral.worker.sandbox import Sandbox, argv_for
from corral.worker.tracking import Track, tracker
from corral.worker.workdirs import Workdirs, remove_workdir

if TYPE_CHECKING:
    from resource import struct_rusage

log = logging.getLogger("corral.worker")

_READ_SIZE = 64 * 1024
_FLUSH_SIZE = 64 * 1024
# How long to keep reading after the main process has exited; only a process that escaped the
# group (setsid) can still hold the pipes open by then, and it must not hang the attempt.
_DRAIN_AFTER_EXIT = 0.5
# Exit polling bounds, used only where pidfd_open is unavailable (non-Linux, old kernels).
_POLL_MIN = 0.001
_POLL_MAX = 0.05
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_UTF8_DECODER = codecs.getincrementaldecoder("utf-8")
# On Linux a pipe reports POLLHUP without POLLIN only once it is both empty and closed by every
# writer, so that alone is end of file: no read(2) is needed to learn it. Elsewhere, read.
_HUP_IS_EOF = sys.platform == "linux"
_HAS_EVENTFD = hasattr(os, "eventfd")
_ACCESS_EFFECTIVE = os.access in os.supports_effective_ids

# A command made only of these characters has no quoting, globbing, redirection, expansion or
# control operators, so `sh -c` would just split it on spaces and exec it. Doing that split
# ourselves saves a whole extra exec (the shell) per job, which dominates tiny jobs.
_PLAIN_COMMAND = re.compile(r"[A-Za-z0-9_./=:,+@%\- ]+")
# First words that the shell handles itself (keywords, builtins that change the shell or have
# no binary); some platforms ship same-named binaries (macOS /usr/bin/cd) that do nothing useful.
_SHELL_WORDS_TEXT = (
    ". : alias bg break case cd command continue do done elif else esac eval exec exit export "
    "fc fg fi for function getopts hash if in jobs local read readonly return select set shift "
    "source then time times trap type ulimit umask unalias unset until wait while"
)
_SHELL_WORDS = frozenset(_SHELL_WORDS_TEXT.split())


class GroupWatch(Protocol):
    def watch(self, pgid: int) -> None: ...

    def forget(self, pgid: int) -> None: ...

    def watch_cgroup(self, path: str) -> None: ...


@dataclass(frozen=True)
class ExecSpec:
    command: str | None = None
    argv: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    inherit_env: bool = False
    workdir_root: str = ""
    keep_workdir: bool = False
    timeout: float | None = None
    grace: float = 5.0
    log_limit: int = 16 * 1024 * 1024
    chunk_interval: float = 0.05
    limits: Mapping[str, float] = field(default_factory=dict)  # see worker/limits.py
    sandbox: Sandbox | None = None  # run inside bubblewrap (code jobs)
    user: tuple[int, int] | None = None  # (uid, gid) to run as, instead of the worker's own
    mask: tuple[str, ...] = ()  # secret values hidden in the output and the reason
    # dataflow (worker/dataflow.py): `prepare` runs in the fresh working directory before the
    # job starts (an OSError or ValueError fails the attempt with its message); `collect` after
    # the job ended, before the directory goes, with the bytes of stdout when `keep_stdout`
    prepare: Callable[[str], None] | None = None
    collect: Callable[[str, BinaryIO | None], None] | None = None
    keep_stdout: bool = False
    # the password for the job's `sudo`, fed to it by worker/askpass.py (never in its env)
    sudo_password: str | None = field(default=None, repr=False)
    # where a worker keeps directories its attempts left as made, to hand to the next attempt
    # (not for jobs run as another user or in the sandbox); None: make one, remove it after
    workdirs: Workdirs | None = field(default=None, compare=False)
    # told the job's process group while it runs, to end it if the worker dies first
    # (worker/watchdog.py); None: nothing outside this process knows of the job
    watchdog: GroupWatch | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.command is None) == (self.argv is None):
            raise ValueError("exactly one of command and argv must be set")
        if self.argv is not None:
            if isinstance(self.argv, str):
                raise ValueError("argv must be a sequence of strings, not a string")
            if not isinstance(self.argv, tuple):
                object.__setattr__(self, "argv", tuple(self.argv))
            if not self.argv:
                raise ValueError("argv must not be empty")
        if self.timeout is not None and self.timeout < 0:
            raise ValueError("timeout must be >= 0")
        if self.grace < 0:
            raise ValueError("grace must be >= 0")
        if self.log_limit < 0:
            raise ValueError("log_limit must be >= 0")
        if self.chunk_interval < 0:
            raise ValueError("chunk_interval must be >= 0")


@dataclass(frozen=True)
class Chunk:
    stream: str
    ts: float
    data: str


@dataclass(frozen=True)
class ExecResult:
    outcome: str
    exit_code: int | None
    reason: str
    started_at: float
    finished_at: float
    resources: Mapping[str, float]
    output_bytes: int
    truncated: bool


class Execution:
    def __init__(self, spec: ExecSpec, on_output: Callable[[Chunk], None]) -> None:
        self._spec = spec
        self._on_output = on_output
        self._lock = threading.Lock()
        # (reason, hard): replaced as a whole so the run loop can read it without the lock.
        self._stop: tuple[str, bool] | None = None
        self._waker: _Waker | None = None
        self._started = False
        self._finished = False
        self._pid: int | None = None
        self._applied: Applied | None = None
        self._track: Track | None = None
        self._askpass: SudoAskpass | None = None
        self._masker = Masker(spec.mask) if spec.mask else None
        self._stdout_copy: BinaryIO | None = None  # every byte of stdout, on disk

    @property
    def pid(self) -> int | None:
        return self._pid

    def _mask(self, text: str) -> str:
        return text if self._masker is None else self._masker.mask(text)

    def cancel(self, reason: str = "canceled") -> None:
        self._request_stop(reason, hard=False)

    def kill(self, reason: str = "killed") -> None:
        self._request_stop(reason, hard=True)

    def _request_stop(self, reason: str, hard: bool) -> None:
        with self._lock:
            if self._finished:
                return
            prev = self._stop
            # The first reason names the cause; a later kill() only escalates the signal.
            self._stop = (prev[0] if prev else reason, hard or (prev is not None and prev[1]))
            if self._waker is not None:
                self._waker.wake()

    def run(self) -> ExecResult:
        with self._lock:
            if self._started:
                raise RuntimeError("Execution.run() can only be called once")
            self._started = True
            stop = self._stop
        try:
            if stop is not None:
                now = time.time()
                return _not_started("canceled", stop[0], now)
            return self._prepare_and_run()
        finally:
            with self._lock:
                self._finished = True
                if self._waker is not None:
                    self._waker.close()
                    self._waker = None

    def _prepare_and_run(self) -> ExecResult:
        spec = self._spec
        started_at = time.time()
        root = spec.workdir_root or None
        reuse = spec.workdirs
        if spec.user is not None or spec.sandbox is not None or spec.keep_workdir:
            reuse = None
        root_key = os.path.abspath(root or tempfile.gettempdir())
        workdir = reuse.take(root_key) if reuse is not None else None
        fresh = workdir is None
        try:
            if workdir is None:
                try:
                    workdir = _make_workdir(root)
                except FileNotFoundError:
                    if root is None:
                        raise
                    os.makedirs(root, exist_ok=True)
                    workdir = _make_workdir(root)
        except OSError as exc:
            return _not_started("failed", f"could not start: {exc}", started_at)
        try:
            tmpdir = f"{workdir}/tmp"  # workdir is absolute, made by _make_workdir
            try:
                if fresh:
                    os.mkdir(tmpdir, 0o700)
                if spec.sandbox is not None:
                    # read-only in the sandbox; empty until jobs take inputs
                    os.mkdir(os.path.join(workdir, "inputs"))
                if spec.user is not None:
                    os.chown(workdir, *spec.user)
                    os.chown(tmpdir, *spec.user)
            except OSError as exc:
                return _not_started("failed", f"could not start: {exc}", started_at)
            if spec.inherit_env:
                env = dict(os.environ)
            else:
                # The worker's own PATH, so a job finds the same tools the host was set up with.
                env = {
                    "PATH": os.environ.get("PATH") or _DEFAULT_PATH,
                    "HOME": workdir,
                    "LANG": "C.UTF-8",
                    "TMPDIR": tmpdir,
                }
            env.update(spec.env)
            if spec.prepare is not None:
                try:
                    spec.prepare(workdir)
                except (OSError, ValueError) as exc:
                    return _not_started("failed", self._mask(str(exc)), started_at)
            if spec.sudo_password is not None:
                self._askpass = SudoAskpass(spec.sudo_password, spec.user)
                try:
                    self._askpass.start(env)
                except OSError as exc:
                    return _not_started("failed", f"could not set up sudo: {exc}", started_at)
            if spec.keep_stdout:
                # unlinked at once: the job cannot see it, and the disk holds it, not memory
                self._stdout_copy = tempfile.TemporaryFile(dir=root)  # noqa: SIM115
            result = self._run_in(workdir, env)
            if spec.collect is not None:
                if self._stdout_copy is not None:
                    self._stdout_copy.flush()
                    self._stdout_copy.seek(0)
                spec.collect(workdir, self._stdout_copy)
            return result
        finally:
            if self._askpass is not None:
                self._askpass.close()
                self._askpass = None
            if self._stdout_copy is not None:
                self._stdout_copy.close()
                self._stdout_copy = None
            if not spec.keep_workdir and not (
                reuse is not None and reuse.give(root_key, workdir, ("tmp",))
            ):
                remove_workdir(workdir, ("tmp",))

    def _run_in(self, workdir: str, env: dict[str, str]) -> ExecResult:
        waker = _Waker()
        with self._lock:
            self._waker = waker
            stop = self._stop
        if stop is not None:
            return _not_started("canceled", stop[0], time.time())
        applied = None
        if self._spec.limits:
            applied = Applied(self._spec.limits, limits_offer())
            try:
                applied.setup(f"{os.getpid()}-{os.path.basename(workdir)}", self._spec.user)
            except OSError as exc:
                return _not_started("failed", f"could not set limits: {exc}", time.time())
            self._applied = applied
        # a sandboxed job has its PID namespace, which ends every process in it with the job
        pool = tracker() if self._spec.sandbox is None else None
        if pool is not None:
            try:
                self._track = pool.take()
            except OSError as exc:
                log.warning("job not followed by a cgroup (%s): only its group is killed", exc)
            if self._spec.watchdog is not None:
                self._spec.watchdog.watch_cgroup(pool.root)
        try:
            return self._run_with(workdir, env, applied)
        finally:
            if applied is not None:
                applied.cleanup()
            if self._track is not None and pool is not None:
                pool.give_back(self._track)

    def _run_with(self, workdir: str, env: dict[str, str], applied: Applied | None) -> ExecResult:
        waker = self._waker
        assert waker is not None
        out_r, out_w = os.pipe()
        try:
            err_r, err_w = os.pipe()
        except BaseException:
            os.close(out_r)
            os.close(out_w)
            raise
        started_at = time.time()
        started_mono = time.monotonic()
        try:
            proc = _spawn(self._spec, env, workdir, out_w, err_w, applied, self._track)
        except BaseException as exc:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            if not isinstance(exc, (OSError, ValueError, subprocess.SubprocessError)):
                raise
            reason = self._mask(f"could not start: {exc}")
            return _not_started("failed", reason, started_at)
        self._pid = proc.pid
        watchdog = self._spec.watchdog
        if watchdog is not None:
            watchdog.watch(proc.pid)  # its own session: the group's id is its pid
        try:
            return self._follow(proc, waker, out_r, out_w, err_r, err_w, started_at, started_mono)
        finally:
            if watchdog is not None:
                watchdog.forget(proc.pid)  # the group was ended when the job was reaped

    def _follow(
        self,
        proc: subprocess.Popen[bytes],
        waker: _Waker,
        out_r: int,
        out_w: int,
        err_r: int,
        err_w: int,
        started_at: float,
        started_mono: float,
    ) -> ExecResult:
        if self._askpass is not None:
            self._askpass.bind(proc.pid)
        # Our own copies of the write ends, held until the job is reaped, keep its exit from
        # waking this thread once per pipe (each hang-up on its own, before the pidfd): those
        # wake-ups cost more than the rest of a short job's loop. Without a pidfd the hang-ups
        # are the hint that the job is done, so then they are let through.
        pidfd = _pidfd_open(proc.pid)
        writers: tuple[int, ...] = (out_w, err_w)
        if pidfd is None:
            os.close(out_w)
            os.close(err_w)
            writers = ()
        try:
            loop = _Loop(self, proc, out_r, err_r, pidfd, writers, waker, started_mono)
        except BaseException:
            killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                proc.returncode = os.waitstatus_to_exitcode(os.waitpid(proc.pid, 0)[1])
            for fd in (out_r, err_r, *writers):
                os.close(fd)
            if pidfd is not None:
                os.close(pidfd)
            raise
        try:
            loop.run()
        finally:
            loop.close()
        return loop.result(started_at)


def _spawn(
    spec: ExecSpec,
    env: dict[str, str],
    cwd: str,
    out_w: int,
    err_w: int,
    applied: Applied | None = None,
    track: Track | None = None,
) -> subprocess.Popen[bytes]:
    extra: dict[str, Any] = {}
    if spec.user is not None:
        # no vfork fast path for these, so only jobs that ask pay for it
        extra = {"user": spec.user[0], "group": spec.user[1], "extra_groups": []}
    # wrapped or boxed, an exec failure shows only as the wrapper's exit: let the shell decide
    direct = spec.sandbox is None and applied is None
    environ = _encoded(env)

    def popen(argv: list[str], executable: str | None = None) -> subprocess.Popen[bytes]:
        with contextlib.nullcontext() if track is None else track.spawning():
            return subprocess.Popen(
                argv,
                executable=executable,
                stdin=_devnull(),
                stdout=out_w,
                stderr=err_w,
                cwd=cwd,
                env=environ,
                close_fds=True,
                start_new_session=True,
                **extra,
            )

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        if spec.sandbox is not None:
            argv = argv_for(spec.sandbox, cwd, os.path.join(cwd, "inputs"), argv)
        if applied is not None:
            argv = applied.wrap(argv)
        # looked for as the worker; the job's own user might not find the same file
        program = _on_path(argv[0], env) if spec.user is None else None
        if program is not None:
            try:
                return popen(argv, program)
            except OSError:
                pass  # not runnable after all: Popen's own search decides, as it always has
        return popen(argv)

    if spec.argv is not None:
        return start(list(spec.argv))
    command = spec.command or ""
    shell = ["/bin/sh", "-c", command]
    if direct and _PLAIN_COMMAND.fullmatch(command):
        words = command.split()
        if words and "=" not in words[0] and words[0] not in _SHELL_WORDS:
            try:
                return start(words)
            except OSError:
                # Not an executable after all: let the shell decide, so a missing command is
                # "exit 127" exactly as it would be with `sh -c`.
                pass
    return start(shell)


_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


_DEVNULL: list[int] = []
_DEVNULL_LOCK = threading.Lock()


def _devnull() -> int:
    """One /dev/null, opened once (as Popen opens it, read and write), for every job's stdin:
    Popen's own DEVNULL opens and closes it again for each process it starts."""
    if not _DEVNULL:
        with _DEVNULL_LOCK:
            if not _DEVNULL:
                _DEVNULL.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
    return _DEVNULL[0]


def _encoded(env: Mapping[str, str]) -> dict[bytes, bytes]:
    """The environment as bytes, encoded as `os.fsencode` would: Popen encodes a str one a
    key and a value at a time through Python calls, a fifth of a short job's spawn."""
    return {
        k.encode(_FS_ENCODING, _FS_ERRORS): v.encode(_FS_ENCODING, _FS_ERRORS)
        for k, v in env.items()
    }


def _on_path(name: str, env: Mapping[str, str]) -> str | None:
    """The first file named `name` in env's PATH, or None to leave the search to Popen.

    Popen builds every PATH entry's candidate in Python before it starts the child (as much
    work as the rest of Popen when PATH is long), and the child then execs each in turn until
    one runs. Every candidate before the first that exists fails to resolve for exec too, so
    that one is where the search stops if it is runnable; if it is not, the caller starts the
    job again without this answer and the search goes on exactly as it always did.
    """
    if not isinstance(name, str) or not name or "/" in name or not _ACCESS_EFFECTIVE:
        return None
    path = env.get("PATH")
    for entry in (os.defpath if path is None else path).split(os.pathsep):
        if not entry.startswith("/"):
            return None  # relative to the job's working directory: Popen resolves it there
        candidate = f"{entry.rstrip('/')}/{name}"
        # with the effective ids, as exec resolves the path: exists, nothing more
        if os.access(candidate, os.F_OK, effective_ids=True):
            return candidate
    return None


class _Stream:
    __slots__ = ("buf", "decoder", "first_ts", "flush_at", "masker", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        # Both made at the first byte: most streams of most jobs (stderr above all) stay empty.
        self.decoder: codecs.IncrementalDecoder | None = None
        self.masker: Masker | None = None
        self.buf = bytearray()
        self.first_ts = 0.0
        self.flush_at = 0.0


class _Loop:
    """The select loop for one running process: output, exit, timeout and stop requests."""

    # Fixed attributes: set and read on every short job, faster in slots than in a dict.
    __slots__ = (
        "applied",
        "drain_until",
        "emit",
        "escalated",
        "finished_at",
        "finished_mono",
        "grace",
        "interval",
        "kept",
        "kill_at",
        "kill_sent",
        "limit",
        "mask",
        "outcome",
        "owner",
        "pid",
        "pidfd",
        "poll_at",
        "poll_step",
        "poller",
        "proc",
        "rusage",
        "started_mono",
        "status",
        "status_lost",
        "stop_reason",
        "streams",
        "term_sent",
        "timeout",
        "timeout_at",
        "total",
        "track",
        "truncated",
        "waker",
        "writers",
    )

    def __init__(
        self,
        owner: Execution,
        proc: subprocess.Popen[bytes],
        out_r: int,
        err_r: int,
        pidfd: int | None,
        writers: tuple[int, ...],
        waker: _Waker,
        started_mono: float,
    ) -> None:
        spec = owner._spec
        self.owner = owner
        self.emit = owner._on_output
        self.proc = proc
        self.pid = proc.pid
        self.waker = waker
        self.interval = spec.chunk_interval
        self.limit = spec.log_limit
        self.grace = spec.grace
        self.timeout = spec.timeout
        self.started_mono = started_mono
        self.timeout_at = None if spec.timeout is None else started_mono + spec.timeout
        self.kill_at: float | None = None
        self.drain_until: float | None = None
        self.poll_at: float | None = None
        self.poll_step = _POLL_MIN
        self.outcome: str | None = None
        self.stop_reason = ""
        self.term_sent = False
        self.kill_sent = False
        self.escalated = False
        self.status: int | None = None
        self.status_lost = False
        self.rusage: struct_rusage | None = None
        self.finished_at = 0.0
        self.finished_mono = 0.0
        self.total = 0
        self.kept = 0
        self.truncated = False
        self.applied = owner._applied
        self.track = owner._track
        self.mask = spec.mask
        self.streams: dict[int, _Stream] = {out_r: _Stream("stdout"), err_r: _Stream("stderr")}
        # poll(2) directly: no kernel object per run (unlike epoll), and none of the selectors
        # module's bookkeeping, which costs more than the system calls for four fds.
        # The pipes stay blocking: this thread is their only reader and reads once per
        # readiness, so a read never waits, and the calls to make them non-blocking are saved.
        self.poller = select.poll()
        for fd in self.streams:
            self.poller.register(fd, select.POLLIN)
        self.poller.register(waker.rfd, select.POLLIN)
        self.pidfd = pidfd
        self.writers = writers  # closed once the job is reaped
        if pidfd is not None:
            self.poller.register(pidfd, select.POLLIN)
        else:
            self.poll_at = started_mono + _POLL_MIN

    def run(self) -> None:
        streams = self.streams
        poll = self.poller.poll
        while self.status is None or streams:
            now = time.monotonic()
            if self.status is None:
                self._check_stop(now)
                if self.poll_at is not None and now >= self.poll_at:
                    self._poll_exit(now)
                    if self.status is not None:
                        continue
            elif self.drain_until is not None and now >= self.drain_until:
                for fd in list(streams):
                    self._close_stream(fd)
                break
            wait = self._next_deadline()
            # Rounded up: waking a little before a deadline would only spin through 0 ms polls.
            events = poll(None if wait is None else math.ceil(max(0.0, wait - now) * 1000))
            now = time.monotonic()
            for fd, revents in events:
                stream = streams.get(fd)
                if stream is not None:
                    if revents & select.POLLIN or not _HUP_IS_EOF:
                        self._read(fd, stream, now)
                    else:
                        self._eof(fd, now)
                elif fd == self.pidfd:
                    self._reap()
                elif fd == self.waker.rfd:
                    self.waker.drain()
            for stream in streams.values():
                if stream.buf and now >= stream.flush_at:
                    self._flush(stream, final=False)
        if self.truncated:
            dropped = self.total - self.kept
            marker = (
                f"\n[corral: log truncated after {_size(self.limit)}; "
                f"{dropped} more bytes dropped]\n"
            )
            self.emit(Chunk("stderr", time.time(), marker))

    def _next_deadline(self) -> float | None:
        if self.status is None:
            best = _earliest(self.kill_at, self.poll_at)
            if self.outcome is None:
                best = _earliest(best, self.timeout_at)
        else:
            best = self.drain_until
        for stream in self.streams.values():
            if stream.buf:
                best = _earliest(best, stream.flush_at)
        return best

    def _check_stop(self, now: float) -> None:
        stop = self.owner._stop
        if stop is not None:
            reason, hard = stop
            if self.outcome is None:
                self.outcome = "canceled"
                self.stop_reason = reason
                if not hard:
                    self._terminate(now)
            if hard:
                self._send_kill()
        if self.outcome is None and self.timeout_at is not None and now >= self.timeout_at:
            self.outcome = "timed_out"
            self._terminate(now)
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            if not self.kill_sent:
                self.escalated = True
                self._send_kill()

    def _terminate(self, now: float) -> None:
        if self.term_sent or self.kill_sent:
            return
        if self.grace <= 0:
            self._send_kill()
            return
        self.term_sent = True
        killpg(self.pid, signal.SIGTERM)
        self.kill_at = now + self.grace

    def _send_kill(self) -> None:
        if not self.kill_sent:
            self.kill_sent = True
            self.kill_at = None
            killpg(self.pid, signal.SIGKILL)

    def _poll_exit(self, now: float) -> None:
        waitid = getattr(os, "waitid", None)
        if waitid is not None:
            try:
                info = waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = True
            if info is not None:
                self._reap()
                return
        else:
            try:
                pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.status_lost = True
                self._reaped(0, None)
                return
            if pid:
                # Reaped before the group kill here, so a reused pid is possible but unlikely.
                killpg(self.pid, signal.SIGKILL)
                self._reaped(status, rusage)
                return
        self.poll_step = min(self.poll_step * 2, _POLL_MAX)
        self.poll_at = now + self.poll_step

    def _reap(self) -> None:
        # The exited leader is still a zombie, so its pid cannot have been reused and the group id
        # is still ours: kill every remaining member now, before reaping frees the id.
        killpg(self.pid, signal.SIGKILL)
        if self.applied is not None:
            self.applied.kill_all()  # members that left the group (setsid) are still in these
        try:
            _, status, rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            # Someone else reaped it (a foreign os.wait()); the status is gone.
            status, rusage = 0, None
            self.status_lost = True
        if self.track is not None:
            # reaped first: until then the leader's zombie counts in the group
            self.track.end(self.pid)  # what left the group (setsid), or what that started
        self._reaped(status, rusage)

    def _reaped(self, status: int, rusage: struct_rusage | None) -> None:
        self.status = status
        self.rusage = rusage
        self.finished_at = time.time()
        self.finished_mono = time.monotonic()
        self.drain_until = self.finished_mono + _DRAIN_AFTER_EXIT
        self.poll_at = None
        self.kill_at = None
        if not self.status_lost:
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        else:
            self.proc.returncode = 0  # keeps Popen.__del__ from tracking it as still running
        if self.pidfd is not None:
            self.poller.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        self._close_writers()

    def _close_writers(self) -> None:
        writers, self.writers = self.writers, ()
        for fd in writers:
            os.close(fd)

    def _read(self, fd: int, stream: _Stream, now: float) -> None:
        data = os.read(fd, _READ_SIZE)
        if not data:
            self._eof(fd, now)
            return
        n = len(data)
        self.total += n
        copy = self.owner._stdout_copy
        if copy is not None and stream.name == "stdout":
            copy.write(data)
        if self.truncated:
            return
        room = self.limit - self.kept
        if n > room:
            cut = room
            # Back up to a character boundary so the kept log does not end in a broken character.
            while cut > 0 and (data[cut] & 0xC0) == 0x80:
                cut -= 1
            data = data[:cut]
            self.truncated = True
            if not data:
                return
        self.kept += len(data)
        if not stream.buf:
            stream.first_ts = time.time()
            stream.flush_at = now + self.interval
            if stream.decoder is None:
                stream.decoder = _UTF8_DECODER(errors="replace")
                if self.mask:
                    stream.masker = Masker(self.mask)
        stream.buf += data
        if len(stream.buf) >= _FLUSH_SIZE:
            self._flush(stream, final=False)

    def _eof(self, fd: int, now: float) -> None:
        self._close_stream(fd)
        if not self.streams and self.status is None and self.pidfd is None:
            # Without a pidfd, EOF on both pipes is the best hint that the process is done.
            self.poll_step = _POLL_MIN
            self.poll_at = now

    def _flush(self, stream: _Stream, final: bool) -> None:
        if stream.decoder is None:
            return  # not a byte kept, so nothing is held in the decoder or the masker either
        text = stream.decoder.decode(stream.buf, final)
        stream.buf.clear()
        if stream.masker:
            text = stream.masker.feed(text)
            if final:
                text += stream.masker.flush()
        if text:
            self.emit(Chunk(stream.name, stream.first_ts, text))

    def _close_stream(self, fd: int) -> None:
        stream = self.streams.pop(fd)
        self.poller.unregister(fd)
        os.close(fd)
        if stream.decoder is not None:  # else not a byte was kept: nothing is held to flush
            if not stream.buf:
                stream.first_ts = time.time()
            self._flush(stream, final=True)

    def close(self) -> None:
        """Release everything; on an abnormal exit (callback raised, interrupt) kill the job."""
        if self.status is None:
            self._send_kill()
            self._reap()
        for fd in list(self.streams):
            self.streams.pop(fd)
            os.close(fd)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self._close_writers()

    def result(self, started_at: float) -> ExecResult:
        status = self.status
        assert status is not None
        code: int | None = None if self.status_lost else os.waitstatus_to_exitcode(status)
        if self.outcome == "timed_out":
            outcome = "timed_out"
            how = "SIGKILL" if self.kill_sent and not self.term_sent else "SIGTERM"
            if self.escalated:
                how += f", then SIGKILL after {_secs(self.grace)}s grace"
            reason = f"timed out after {_secs(self.timeout or 0.0)}s ({how})"
        elif self.outcome == "canceled":
            outcome, reason = "canceled", self.stop_reason
        elif code is None:
            outcome, reason = "failed", "exit status lost (reaped elsewhere)"
        elif code == 0:
            outcome, reason = "passed", "exit 0"
        elif code > 0:
            outcome, reason = "failed", f"exit {code}"
        else:
            outcome, reason = "failed", f"killed by signal {-code} ({_signame(-code)})"
        applied = self.applied
        if applied is not None and outcome in ("failed", "passed"):
            cpu = 0.0 if self.rusage is None else self.rusage.ru_utime + self.rusage.ru_stime
            hit = applied.explain(code, cpu, self.owner._spec.sandbox is not None)
            if hit is not None:
                text, killed = hit
                outcome = "failed"
                reason = text if killed else f"{reason}; {text}"
        track = self.track
        if track is not None and track.killed:
            n = track.killed
            reason += f"; killed {n} process{'es' if n > 1 else ''} it left running"
        reason = self.owner._mask(reason)
        resources: dict[str, float] = {"wall_s": self.finished_mono - self.started_mono}
        if applied is not None:
            resources.update(applied.resources())
        if track is not None:
            # every process of the job was in one
            resources["cgroup_version"] = float(track.version)
            if track.killed:
                resources["strays_killed"] = float(track.killed)
        if self.owner._spec.sandbox is not None:
            resources["pid_namespace"] = 1.0
        ru = self.rusage
        if ru is not None:
            resources["user_cpu_s"] = ru.ru_utime
            resources["sys_cpu_s"] = ru.ru_stime
            # Started by vfork (as Popen starts it), the job's process took on this process's
            # peak RSS at its exec (Linux keeps the larger of the two): a figure no larger than
            # that peak may be the worker's own, so only a larger one is the job's.
            if ru.ru_maxrss > _own_peak(ru.ru_maxrss):
                resources["max_rss_kib"] = _kib(ru.ru_maxrss)
        return ExecResult(
            outcome=outcome,
            exit_code=code,
            reason=reason,
            started_at=started_at,
            finished_at=self.finished_at,
            resources=resources,
            output_bytes=self.total,
            truncated=self.truncated,
        )


_PEAK = [0]  # this process's peak RSS when last read: it only grows


def _own_peak(than: int) -> int:
    """This process's peak RSS, read again only when `than` is above the one last read: most
    jobs' figure is no more than that, and need no system call to be told apart."""
    if than > _PEAK[0]:
        _PEAK[0] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _PEAK[0]


def _kib(maxrss: int) -> float:
    return maxrss / 1024 if sys.platform == "darwin" else float(maxrss)  # bytes there


class _Waker:
    """A file descriptor other threads can make readable to interrupt the select loop."""

    def __init__(self) -> None:
        self.closed = False
        if _HAS_EVENTFD:
            self.rfd = self.wfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        else:
            self.rfd, self.wfd = os.pipe()
            os.set_blocking(self.rfd, False)
            os.set_blocking(self.wfd, False)

    def wake(self) -> None:
        if not self.closed:
            # BlockingIOError: already full of wake-ups, which is just as good.
            with contextlib.suppress(BlockingIOError):
                os.write(self.wfd, (1).to_bytes(8, sys.byteorder))

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.rfd, 4096)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.rfd)
            if self.wfd != self.rfd:
                os.close(self.wfd)


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None or a <= b:
        return a
    return b


def _pidfd_open(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:  # ENOSYS on old kernels, EPERM under some seccomp profiles
        return None
    return fd


def killpg(pgid: int, sig: int) -> None:
    """Signal a process group, if anything is left of it."""
    # ESRCH: the group is already gone; EPERM: only zombies are left (on some platforms).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _not_started(outcome: str, reason: str, started_at: float) -> ExecResult:
    now = time.time()
    return ExecResult(
        outcome=outcome,
        exit_code=None,
        reason=reason,
        started_at=started_at,
        finished_at=now,
        resources={"user_cpu_s": 0.0, "sys_cpu_s": 0.0, "max_rss_kib": 0.0, "wall_s": 0.0},
        output_bytes=0,
        truncated=False,
    )


def _make_workdir(root: str | None) -> str:
    """A new, empty directory `attempt-*` in root (the temp directory if None), mode 0700.

    What tempfile.mkdtemp does, without its name generator and parameter checks: those cost
    about as much as the mkdir itself on tmpfs, and a tiny job pays them on every attempt.
    """
    parent = os.path.abspath(tempfile.gettempdir() if root is None else root)
    for _ in range(100):
        # random's module-level generator is reseeded in forked children, so two workers
        # forked from one parent do not walk the same names.
        path = f"{parent}/attempt-{random.getrandbits(48):012x}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no unused attempt directory name found", parent)


def _secs(value: float) -> str:
    return f"{value:g}"


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def _signame(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
