"""Run task jobs in long-lived Python processes of the worker, one per busy slot (stdlib only).

A process imports a task file once per source hash and runs many calls. One that dies (a
crash, os._exit, a signal), runs past its job's timeout, or grows past its memory cap takes
down only itself and that one job; the next call starts a fresh process. Processes are also
replaced after a number of calls, so slow leaks do not pile up.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from corral.domain.models import Lease
from corral.worker.executor import Chunk, ExecResult, GroupWatch, killpg
from corral.worker.task_runner import left_as_made
from corral.worker.tracking import Track, tracker
from corral.worker.workdirs import remove_workdir

MAX_RESULT = 1024 * 1024  # bytes of a task's JSON return value
_READ = 64 * 1024
KEEP_SOURCE_PATHS = 1024  # task file versions whose place on disk is remembered
_RSS_EVERY = 0.5  # seconds between memory checks of a running task
MAX_SPARE_DIRS = 8  # empty working directories kept for the next calls
# A process this many calls from its last has its successor started: a new process costs an
# interpreter and its imports (tens of milliseconds), spent then beside the last calls instead
# of in front of the next one.
SUCCESSOR_AHEAD = 32
_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME", "PYTHONPATH")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory that holds `corral`


@dataclass(frozen=True)
class PoolOptions:
    cache_dir: str  # task sources, by hash
    workdir_root: str = ""  # where each call's working directory goes ("" = system temp)
    max_calls: int = 1000  # a process is replaced after this many tasks
    max_rss: int = 2 * 1024**3  # bytes; a process that holds more is killed (mid-task) or replaced
    log_limit: int = 16 * 1024 * 1024
    env: Mapping[str, str] = field(default_factory=dict)
    # told each runner process's group, to end it if the worker dies first (worker/watchdog.py)
    watchdog: GroupWatch | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TaskResult(ExecResult):
    value: Any = None  # the task's return value, when it passed


class SourceMissing(Exception):
    """The server does not (or no longer) hold the task's source."""


class _Process:
    """One runner process and its pipes."""

    def __init__(self, env: Mapping[str, str], watchdog: GroupWatch | None = None) -> None:
        # Born in a cgroup of its own where one can be made (worker/tracking.py): what its tasks
        # start goes with it even if it left the runner's process group (`setsid`).
        self.track: Track | None = None
        pool = tracker()
        if pool is not None:
            with contextlib.suppress(OSError):  # followed by its process group alone
                self.track = pool.take()
            if watchdog is not None:
                watchdog.watch_cgroup(pool.root)
        req_r, self._req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        try:
            with contextlib.nullcontext() if self.track is None else self.track.spawning():
                self.popen = subprocess.Popen(
                    [sys.executable, "-m", "corral.worker.task_runner", str(req_r), str(rep_w)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=(req_r, rep_w),
                    env=dict(env),
                    start_new_session=True,  # its own group: a kill takes what tasks started
                    close_fds=True,
                )
        except BaseException:
            self._give_back_track()
            os.close(self._req_w)
            os.close(self.rep_r)
            raise
        finally:
            os.close(req_r)
            os.close(rep_w)
        self.watchdog = watchdog
        if watchdog is not None:
            # a task mid-call does not see its request pipe close when the worker dies
            watchdog.watch(self.popen.pid)
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.out_fd = self.popen.stdout.fileno()
        self.err_fd = self.popen.stderr.fileno()
        # woken by a kill from another thread; made once per process, not once per call
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.out_fd, self.err_fd, self.rep_r, self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        # poll(2) directly: no kernel object to make and close (unlike epoll); the set is
        # made once per process and kept for every call it runs
        self.poller = select.poll()
        for fd in (self.out_fd, self.err_fd, self.rep_r, self.wake_r):
            self.poller.register(fd, select.POLLIN)
        self.streams = select.poll()  # stdout and stderr alone: what is left in them at a reply
        for fd in (self.out_fd, self.err_fd):
            self.streams.register(fd, select.POLLIN)
        self.calls = 0
        self.successor_started = False
        self.reply = b""
        self.reported_rss = -1  # as the runner measured it after its last call; -1: unknown

    def send(self, request: dict[str, Any]) -> None:
        data = json.dumps(request).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self._req_w, view) :]
        self.calls += 1

    def note_reply(self, reply: bytes) -> bool:
        """Keep the memory figure that leads a reply (`{"rss":N,...`); whether the reply says
        the call left its directory empty and as made (`"kept":1`, next)."""
        head, _, rest = reply[7:40].partition(b",")
        try:
            self.reported_rss = int(head) if reply.startswith(b'{"rss":') else -1
        except ValueError:
            self.reported_rss = -1
        return self.reported_rss >= 0 and rest.startswith(b'"kept":1,')

    def rss(self) -> int:
        """Resident memory in bytes (Linux; 0 where /proc is not there)."""
        try:
            with open(f"/proc/{self.popen.pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def kill(self) -> None:
        killpg(self.popen.pid, signal.SIGKILL)
        self.close()

    def close(self) -> None:
        """Closing its request pipe ends an idle runner; wait for it, end what its tasks left
        running, close the rest.

        A process a task starts may outlive the call (a pool a task module keeps, say) but not
        the runner: once the runner has exited, and before it is reaped (its pid, the group's
        id, stays ours until then), every process left in its group is killed; and, where the
        runner was born in a cgroup, every process still in that (one that left the group)."""
        with contextlib.suppress(OSError):
            os.close(self._req_w)
        if self.popen.returncode is None:  # not reaped yet (`death` reaps a crashed one)
            state = _exit_state(self.popen.pid, 5.0)
            if state == "running":
                killpg(self.popen.pid, signal.SIGKILL)
                state = _exit_state(self.popen.pid, 5.0)
            if state == "exited":
                killpg(self.popen.pid, signal.SIGKILL)  # the unreaped runner holds the group's id
            self.popen.wait()
        self._give_back_track()  # and what left the group: all that is still in its cgroup
        if self.watchdog is not None:
            self.watchdog.forget(self.popen.pid)
        for closing in (self.popen.stdout, self.popen.stderr):
            if closing is not None:
                closing.close()
        for fd in (self.rep_r, self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _give_back_track(self) -> None:
        track, self.track = self.track, None
        pool = tracker()
        if track is not None and pool is not None:
            pool.give_back(track)

    def wake(self) -> None:
        """Make the call waiting on this process look at its stop reason now."""
        with contextlib.suppress(OSError):  # full (a wake is pending anyway) or closed
            os.write(self.wake_w, b"x")

    def death(self) -> str:
        code = self.popen.wait()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "unknown"
            return f"killed by signal {-code} ({name})"
        return f"exited with code {code}"


class TaskPool:
    """Runner processes of one worker, handed out one per call and reused."""

    def __init__(self, fetch: Callable[[str], bytes], options: PoolOptions) -> None:
        self.fetch = fetch  # the link's task_source
        self.options = options
        self._lock = threading.Lock()
        self._idle: list[_Process] = []
        self._successors: list[_Process] = []  # started for processes about to be retired
        self._retiring: set[threading.Thread] = set()  # waiting for retired processes to exit
        self._spare_dirs: list[str] = []  # working directories a call left empty, for the next
        self._sources: dict[tuple[str, str], str] = {}  # (sha256, module) -> its file in the cache
        self._closed = False
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env.update(options.env)
        self._env = env

    def call(
        self,
        lease: Lease,
        env: Mapping[str, str],
        on_output: Callable[[Chunk], None],
        *,
        prepare: Callable[[str], None] | None = None,
        collect: Callable[[str, BinaryIO | None], None] | None = None,
        keep_stdout: bool = False,
    ) -> TaskCall:
        """One call; `prepare`, `collect` and `keep_stdout` as in the executor's ExecSpec."""
        call = TaskCall(self, lease, env, on_output)
        call.prepare, call.collect = prepare, collect
        call.keep_stdout = keep_stdout
        return call

    def source_path(self, sha256: str, module: str) -> str:
        """The task file on disk, fetched from the server once per hash."""
        known = self._sources.get((sha256, module))
        if known is not None:
            return known  # found or written by this pool: no look at the disk per call
        path = Path(self.options.cache_dir) / sha256 / f"{module}.py"
        if len(self._sources) >= KEEP_SOURCE_PATHS:
            self._sources.clear()  # many versions of task files over a long life: start over
        if path.exists():
            self._sources[sha256, module] = str(path)
            return str(path)
        try:
            source = self.fetch(sha256)
        except Exception as exc:
            raise SourceMissing(f"could not fetch the task's source: {exc}") from exc
        if hashlib.sha256(source).hexdigest() != sha256:
            raise SourceMissing("the task source from the server does not match its hash")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(source)
        os.replace(tmp, path)
        self._sources[sha256, module] = str(path)
        return str(path)

    def take(self) -> _Process:
        with self._lock:
            if self._closed:
                raise RuntimeError("the task pool is closed")
            if self._idle:
                return self._idle.pop()
            if self._successors:
                return self._successors.pop(0)
        return _Process(self._env, self.options.watchdog)

    def give(self, proc: _Process) -> None:
        """Back to the idle list, or retired when it has run enough or holds too much memory.

        Near its last call, its successor is started; a retired process is left to exit on
        a thread of its own, so the slot goes on to its next call at once."""
        rss = proc.reported_rss if proc.reported_rss >= 0 else proc.rss()
        if proc.calls >= self.options.max_calls or rss > self.options.max_rss:
            self._retire(proc)
            return
        successor = None
        if not proc.successor_started and proc.calls >= self.options.max_calls - SUCCESSOR_AHEAD:
            proc.successor_started = True
            successor = _Process(self._env, self.options.watchdog)
        with self._lock:
            if not self._closed:
                self._idle.append(proc)
                if successor is not None:
                    self._successors.append(successor)
                return
        proc.close()
        if successor is not None:
            successor.close()

    def _retire(self, proc: _Process) -> None:
        def close() -> None:
            proc.close()
            with self._lock:
                self._retiring.discard(thread)

        thread = threading.Thread(target=close, name="corral-task-retire", daemon=True)
        with self._lock:
            self._retiring.add(thread)
        thread.start()

    def workdir(self) -> str:
        """An empty working directory for a call: one a call left empty, or a new one.

        Making and removing a directory per call costs more than a small task (on a disk
        mounted with `discard`, each removal waits for the device); an empty directory of this
        pool's own, 0700 as made, is as fresh as a new one.
        """
        with self._lock:
            if self._spare_dirs:
                return self._spare_dirs.pop()
        return tempfile.mkdtemp(prefix="corral-task-", dir=self.options.workdir_root or None)

    def done_with(self, path: str, kept: bool = False) -> None:
        """A call's directory: kept for the next call when left empty and as made, else removed.
        `kept`: the task process has looked and found it so (its reply said), after the call;
        else it is looked at here."""
        if kept or left_as_made(path):
            with self._lock:
                if not self._closed and len(self._spare_dirs) < MAX_SPARE_DIRS:
                    self._spare_dirs.append(path)
                    return
        remove_workdir(path)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = [*self._idle, *self._successors], []
            self._successors = []
            spare, self._spare_dirs = self._spare_dirs, []
            retiring = list(self._retiring)
        for proc in idle:
            proc.close()
        for thread in retiring:
            thread.join()  # each exits within `_Process.close`'s own bound
        for path in spare:
            remove_workdir(path)


class TaskCall:
    """One task job in one runner process; `kill` stops it from another thread."""

    def __init__(
        self,
        pool: TaskPool,
        lease: Lease,
        env: Mapping[str, str],
        on_output: Callable[[Chunk], None],
    ) -> None:
        self.pool = pool
        self.lease = lease
        self.env = env
        self.on_output = on_output
        self._stop: str | None = None
        self._lock = threading.Lock()
        self._proc: _Process | None = None  # the process running it, while it runs
        self._done = False
        self._bytes = 0
        # made at a stream's first byte: most calls print nothing, and two decoders made for
        # every call were a tenth of a slot's time in a batch of no-op tasks
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self.prepare: Callable[[str], None] | None = None
        self.collect: Callable[[str, BinaryIO | None], None] | None = None
        self.keep_stdout = False
        self._stdout_copy: BinaryIO | None = None
        self._kept = False  # the task process found the call's directory left as given

    def kill(self, reason: str = "killed") -> None:
        with self._lock:
            if self._done or self._stop is not None:
                return
            self._stop = reason
            proc = self._proc
        if proc is not None:
            proc.wake()

    def run(self) -> TaskResult:
        started = time.time()
        try:
            return self._run(started)
        except Exception as exc:  # the worker's own trouble (no fork, a full disk): this job fails
            return self._end(started, "failed", f"could not run the task: {exc}")
        finally:
            with self._lock:
                self._done = True

    def _end(
        self, started: float, outcome: str, reason: str, value: Any = None, **res: float
    ) -> TaskResult:
        now = time.time()
        return TaskResult(
            outcome=outcome,
            exit_code=None if outcome != "passed" else 0,
            reason=reason,
            started_at=started,
            finished_at=now,
            resources={"wall_s": now - started, **res},
            output_bytes=self._bytes,
            truncated=self._bytes > self.pool.options.log_limit,
            value=value,
        )

    def _run(self, started: float) -> TaskResult:
        payload = self.lease.payload
        name = payload.get("task")
        if self._stop is not None:
            return self._end(started, "canceled", self._stop)
        if not payload.get("sha256"):
            return self._end(
                started, "failed", f"task {name!r} is no longer registered on the server"
            )
        try:
            path = self.pool.source_path(str(payload["sha256"]), str(payload["module"]))
        except SourceMissing as exc:
            return self._end(started, "failed", str(exc))
        workdir = self.pool.workdir()
        try:
            if self.prepare is not None:
                self.prepare(workdir)
        except (OSError, ValueError) as exc:
            remove_workdir(workdir)
            return self._end(started, "failed", str(exc))
        if self.keep_stdout:
            # unlinked at once: on disk, not in memory
            self._stdout_copy = tempfile.TemporaryFile(dir=self.pool.options.workdir_root or None)  # noqa: SIM115
        proc = self.pool.take()
        with self._lock:
            self._proc = proc
        try:
            proc.send(
                {
                    "sha256": payload["sha256"],
                    "module": payload["module"],
                    "function": payload["function"],
                    "path": path,
                    "args": dict(payload.get("args") or {}),
                    "env": dict(self.env),
                    "cwd": workdir,
                }
            )
            result = self._wait(proc, started)
            if self.collect is not None:
                if self._stdout_copy is not None:
                    self._stdout_copy.flush()
                    self._stdout_copy.seek(0)
                self.collect(workdir, self._stdout_copy)
            return result
        except BrokenPipeError:
            self._drain(proc)
            proc.kill()
            return self._end(started, "failed", f"task process died: {proc.death()}")
        except BaseException:
            proc.kill()
            raise
        finally:
            with self._lock:
                self._proc = None
            if self._stdout_copy is not None:
                self._stdout_copy.close()
                self._stdout_copy = None
            # as the task process found it after the call, unless the worker has been at
            # it since (collecting outputs): then it is looked at again here
            self.pool.done_with(workdir, self._kept and self.collect is None)

    def _wait(self, proc: _Process, started: float) -> TaskResult:
        timeout = self.lease.timeout
        deadline = started + timeout if timeout else None
        max_rss = self.pool.options.max_rss
        sel = proc.poller
        streams = {proc.out_fd: "stdout", proc.err_fd: "stderr"}
        next_rss = time.monotonic() + _RSS_EVERY
        while True:
            now = time.time()
            wait = _RSS_EVERY if deadline is None else max(0.0, min(_RSS_EVERY, deadline - now))
            for fd, _ in sel.poll(wait * 1000):
                if fd in streams:
                    if not self._read(fd, streams[fd]):
                        sel.unregister(fd)  # closed: the process is on its way out
                elif fd == proc.wake_r:
                    while _read_some(fd):
                        pass  # a kill for this call or, come too late, for an earlier one
                elif fd == proc.rep_r:
                    data = _read_some(fd)
                    if data is None:
                        continue
                    if data == b"":  # the process is gone without a reply
                        self._drain(proc)
                        proc.kill()
                        return self._end(started, "failed", f"task process died: {proc.death()}")
                    proc.reply += data
                    if proc.reply.endswith(b"\n"):
                        reply, proc.reply = proc.reply, b""
                        self._kept = proc.note_reply(reply)
                        self._drain(proc)
                        self.pool.give(proc)
                        return self._answer(reply, started)
            if self._stop is not None:
                self._drain(proc)
                proc.kill()
                return self._end(started, "canceled", self._stop)
            if deadline is not None and time.time() >= deadline:
                self._drain(proc)
                proc.kill()
                return self._end(
                    started, "timed_out", f"timed out after {timeout:g}s (task process killed)"
                )
            if time.monotonic() >= next_rss:
                next_rss = time.monotonic() + _RSS_EVERY
                rss = proc.rss()
                if rss > max_rss:
                    self._drain(proc)
                    proc.kill()
                    return self._end(
                        started,
                        "failed",
                        f"task process killed: it used {rss // 2**20} MiB, "
                        f"over the cap of {max_rss // 2**20} MiB",
                    )

    def _answer(self, reply: bytes, started: float) -> TaskResult:
        try:
            answer = json.loads(reply)
        except ValueError:
            return self._end(started, "failed", "the task process sent an unreadable reply")
        if not answer.get("ok"):
            if answer.get("traceback"):
                self._emit("stderr", answer["traceback"])
            return self._end(started, "failed", str(answer.get("error") or "the task failed"))
        size = len(reply)
        if size > MAX_RESULT:
            return self._end(
                started,
                "failed",
                f"the task's return value is {size} bytes of JSON, over the limit of {MAX_RESULT}",
            )
        return self._end(started, "passed", "returned", answer.get("result"))

    def _read(self, fd: int, stream: str) -> bool:
        data = _read_some(fd)
        if data is None:
            return True
        if not data:
            return False
        self._keep(stream, data)
        self._emit(stream, self._decode(stream, data))
        return True

    def _keep(self, stream: str, data: bytes) -> None:
        if self._stdout_copy is not None and stream == "stdout":
            self._stdout_copy.write(data)

    def _drain(self, proc: _Process) -> None:
        """What the task wrote before its reply (or its death) is in the pipes: read it all.
        Asked of poll first: most tasks print nothing, and a read of an empty pipe raises."""
        names = {proc.out_fd: "stdout", proc.err_fd: "stderr"}
        for fd, _ in proc.streams.poll(0):
            while (data := _read_some(fd)) and data:
                self._keep(names[fd], data)
                self._emit(names[fd], self._decode(names[fd], data))
                if len(data) < _READ:
                    break  # the pipe held less than a read takes: it is empty now

    def _decode(self, stream: str, data: bytes) -> str:
        decoder = self._decoders.get(stream)
        if decoder is None:
            decoder = self._decoders[stream] = _UTF8(errors="replace")
        return decoder.decode(data)

    def _emit(self, stream: str, text: str) -> None:
        if not text:
            return
        limit = self.pool.options.log_limit
        before = self._bytes
        self._bytes += len(text)
        if before >= limit:
            return
        if self._bytes > limit:
            text = (
                text[: limit - before]
                + f"\n[corral: output over {limit} bytes; the rest is dropped]\n"
            )
        self.on_output(Chunk(stream, time.time(), text))


_UTF8 = codecs.getincrementaldecoder("utf-8")


def _exit_state(pid: int, timeout: float) -> str:
    """Wait up to `timeout` seconds for a child to exit, without reaping it: "exited" (a
    zombie, its id still ours), "running", or "gone" (reaped by someone else)."""
    deadline = time.monotonic() + timeout
    step = 0.001
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return "exited"
        except ChildProcessError:
            return "gone"
        left = deadline - time.monotonic()
        if left <= 0:
            return "running"
        time.sleep(min(step, left))
        step = min(step * 2, 0.05)


def _read_some(fd: int) -> bytes | None:
    """Bytes available now; b"" at end of file; None when there are none yet."""
    try:
        return os.read(fd, _READ)
    except BlockingIOError:
        return None
    except OSError:
        return b""
