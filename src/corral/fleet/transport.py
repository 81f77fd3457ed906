"""SSH connections to fleet hosts (execnet gateways): opened on demand, kept warm, reopened with back-off."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import execnet

from corral.fleet import remote
from corral.fleet.inventory import Host
from corral.worker import askpass, executor, limits, masking, sandbox, tracking, watchdog, workdirs
from corral.worker.executor import Chunk, ExecResult

log = logging.getLogger("corral.fleet")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
CONNECT_TIMEOUT = 10  # seconds ssh may take to connect
HELLO_TIMEOUT = 30.0  # seconds for the host's Python to answer once connected
TIDY_TIMEOUT = 2.0  # seconds a host may take to remove its kept directories when we leave
# ssh notices a dead peer after about ALIVE_INTERVAL * ALIVE_COUNT seconds without an answer
ALIVE_INTERVAL = 5
ALIVE_COUNT = 3
SSH_SAID_MAX = 500  # characters of ssh's last message kept for a reason


class Unreachable(Exception):
    """The host could not be reached over SSH (the message never holds key material)."""


@dataclass(frozen=True)
class HostState:
    site: str
    connected: bool
    python: str = ""
    platform: str = ""
    # "cgroup v1", "cgroup v2" or "process group", once connected (remote.about)
    containment: str = ""
    latency: float | None = None  # seconds for a round trip through the channel
    error: str = ""
    retry_in: float = 0.0


def ssh_spec(host: Host, ssh_config: str = "", ssh_log: str = "") -> str:
    """The execnet spec: `ssh` runs with the user's own configuration and agent, non-interactive;
    its own messages go to `ssh_log` when given (see `Transport.ssh_said`)."""
    args = [
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={CONNECT_TIMEOUT}",
        "-o",
        f"ServerAliveInterval={ALIVE_INTERVAL}",
        "-o",
        f"ServerAliveCountMax={ALIVE_COUNT}",
    ]
    if host.port:
        args += ["-p", str(host.port)]
    if host.identity:
        args += ["-i", host.identity]
    if ssh_log:
        args += ["-E", ssh_log]
    args.append(host.ssh)
    spec = f"ssh={' '.join(args)}//python={host.python}//id={host.site}"
    if ssh_config:
        spec += f"//ssh_config={ssh_config}"
    return spec


# A job's channel once the connection is set up: `remote` is already in the host's interpreter,
# so the job costs no source to send and compile (about 2 ms a job against shipping the module)
JOB_CHANNEL = f"from {remote.ITSELF} import serve\nserve(channel)"
# Job channels kept open for later jobs, per host (the host's slots, at most, are busy at once)
KEEP_CHANNELS = 16


def _shipped() -> dict[str, str]:
    """The executor and the standard-library-only modules it imports, in import order, and
    `remote` itself for the job channels."""
    helpers = (askpass, limits, masking, sandbox, tracking, watchdog, workdirs)
    shipped = {m.__name__: inspect.getsource(m) for m in helpers}
    shipped[remote.EXECUTOR] = inspect.getsource(executor)
    shipped[remote.ITSELF] = inspect.getsource(remote)
    return shipped


class Transport:
    """One host's connection. Thread-safe: jobs in several slots share the gateway."""

    def __init__(self, host: Host, ssh_config: str = "", ssh_log: str = "") -> None:
        self.host = host
        self.ssh_config = ssh_config
        # where this host's ssh writes what it has to say (why it could not connect, say),
        # instead of the server's stderr; "" leaves it there
        self.ssh_log = ssh_log
        self._said_before = 0  # bytes ssh wrote there before the connection was up
        self._lock = threading.Lock()
        self._group = execnet.Group()
        self._gateway: Any = None
        self._failures = 0
        self._retry_at = 0.0
        self._error = ""
        self._about: dict[str, Any] = {}
        self._latency: float | None = None
        self._idle: list[JobChannel] = []  # job channels free for the next job
        self._numbers = itertools.count(1)  # the jobs sent on this host's channels

    # -- the gateway -------------------------------------------------------------------

    def gateway(self) -> Any:
        """The warm gateway, opened now if there is none; Unreachable while backing off."""
        with self._lock:
            gw = self._gateway
            if gw is not None and gw.hasreceiver():
                return gw
            if gw is not None:
                self._dropped_locked("the connection dropped")
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise Unreachable(f"{self._error} (next try in {wait:.1f}s)")
            try:
                gw = self._open()
            except Exception as exc:
                self._failed_locked(_describe(exc, self.ssh_said()))
                raise Unreachable(self._error) from None
            self._gateway = gw
            self._failures = 0
            self._error = ""
            return gw

    def _open(self) -> Any:
        started = time.monotonic()
        if self.ssh_log:
            with open(self.ssh_log, "w", opener=_private):  # this connection's words only
                pass
        gw = self._group.makegateway(ssh_spec(self.host, self.ssh_config, self.ssh_log))
        try:
            channel = gw.remote_exec(remote)
            channel.send(("install", _shipped(), self.host.site, self.host.containment))
            reply = channel.receive(HELLO_TIMEOUT)
            channel.waitclose(HELLO_TIMEOUT)
        except Exception:
            gw.exit()
            raise
        self._about = dict(reply[1])
        self._latency = time.monotonic() - started
        self._said_before = _size(self.ssh_log)
        log.info(
            "connected to %s (%s): Python %s", self.host.site, self.host.ssh, self._about["python"]
        )
        return gw

    def ssh_said(self, since_up: bool = False) -> str:
        """The last thing this host's ssh wrote of its own ("Connection refused", "Permission
        denied (publickey)"), or "" when it said nothing or writes to the server's stderr.
        `since_up`: only since the connection was made (why it dropped, not how it began)."""
        if not self.ssh_log:
            return ""
        try:
            with open(self.ssh_log, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = max(self._said_before if since_up else 0, size - SSH_SAID_MAX)
                f.seek(start)
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        return lines[-1][:SSH_SAID_MAX] if lines else ""

    def job_channel(self) -> tuple[JobChannel, int]:
        """A job channel (a kept one, or a new one) and a number for the job.

        Opening a channel costs the host a thread and a compile, a millisecond of its CPU a
        job; a kept channel runs the next job for a message."""
        gw = self.gateway()
        with self._lock:
            while self._idle:
                kept = self._idle.pop()
                if kept.gateway is gw and not kept.channel.isclosed():
                    return kept, next(self._numbers)
            number = next(self._numbers)
        channel = gw.remote_exec(JOB_CHANNEL)
        channel.send(("jobs",))
        return JobChannel(gw, channel), number

    def keep(self, job_channel: JobChannel) -> None:
        """A job channel whose job has ended, back for the next job (or closed)."""
        with self._lock:
            if job_channel.gateway is self._gateway and len(self._idle) < KEEP_CHANNELS:
                self._idle.append(job_channel)
                return
        with contextlib.suppress(Exception):
            job_channel.channel.close()

    def warm(self) -> bool:
        """Connected now: a job starts with a message, without waiting to connect."""
        with self._lock:
            return self._gateway is not None and self._gateway.hasreceiver()

    def backoff_left(self) -> float:
        """Seconds until the next try to connect is allowed (0 when connected or due)."""
        with self._lock:
            if self._gateway is not None and self._gateway.hasreceiver():
                return 0.0
            return max(0.0, self._retry_at - time.monotonic())

    def dropped(self, why: str) -> None:
        with self._lock:
            self._dropped_locked(why)

    def _dropped_locked(self, why: str) -> None:
        gw, self._gateway = self._gateway, None
        self._idle.clear()  # they go with their connection
        if gw is not None:
            threading.Thread(target=_exit_quietly, args=(gw,), daemon=True).start()
        self._failed_locked(why)

    def _failed_locked(self, why: str) -> None:
        self._failures += 1
        delay = min(BACKOFF_FIRST * 2 ** (self._failures - 1), BACKOFF_MAX)
        self._retry_at = time.monotonic() + delay
        self._error = f"cannot reach {self.host.site} ({self.host.ssh}) over SSH: {why}"
        log.warning("%s; next try in %.1fs", self._error, delay)

    def close(self) -> None:
        with self._lock:
            gw, self._gateway = self._gateway, None
            self._idle.clear()
        if gw is not None:
            _exit_quietly(gw, tidy=True)

    # -- looking at it -----------------------------------------------------------------

    def state(self) -> HostState:
        with self._lock:
            connected = self._gateway is not None and self._gateway.hasreceiver()
            return HostState(
                site=self.host.site,
                connected=connected,
                python=str(self._about.get("python", "")),
                platform=str(self._about.get("platform", "")),
                containment=str(self._about.get("containment", "")),
                latency=self._latency,
                error="" if connected else self._error,
                retry_in=0.0 if connected else max(0.0, self._retry_at - time.monotonic()),
            )

    def check(self) -> HostState:
        """Connect if needed (ignoring back-off) and time one round trip through a channel."""
        with self._lock:
            self._retry_at = 0.0
        try:
            gw = self.gateway()
            started = time.monotonic()
            channel = gw.remote_exec(JOB_CHANNEL)
            channel.send(("ping",))
            reply = channel.receive(HELLO_TIMEOUT)
            latency = time.monotonic() - started
            channel.waitclose(HELLO_TIMEOUT)
        except Unreachable:
            return self.state()
        except Exception as exc:
            self.dropped(_describe(exc, self.ssh_said(since_up=True)))
            return self.state()
        with self._lock:
            self._about = dict(reply[1])
            self._latency = latency
        return self.state()

    # -- running a job -----------------------------------------------------------------

    def execution(
        self, spec: dict[str, Any], on_output: Callable[[Chunk], None]
    ) -> RemoteExecution:
        return RemoteExecution(self, spec, on_output)


class JobChannel:
    """A job channel of a host, kept for one job after another. Its messages are taken by a
    callback on execnet's receiving thread and go straight to the job running on it now: no
    thread of ours waits on the channel, and a job's end is handled as it arrives."""

    def __init__(self, gateway: Any, channel: Any) -> None:
        self.gateway = gateway
        self.channel = channel
        self._lock = threading.Lock()
        self._current: RemoteExecution | None = None
        channel.setcallback(self._heard, endmarker=remote.CLOSED)

    def attach(self, execution: RemoteExecution) -> None:
        with self._lock:
            self._current = execution

    def _heard(self, message: Any) -> None:
        with self._lock:
            execution = self._current
            if message is remote.CLOSED or message[0] == "end":
                self._current = None
        if execution is None:
            return  # between jobs: nothing is waiting for it
        if message is remote.CLOSED:
            execution.lost(self, "the connection dropped")
        elif message[0] == "out":
            execution.on_output(Chunk(message[1], message[2], message[3]))
        elif message[0] == "end":
            execution.remote_end(self, message[1])


class RemoteExecution:
    """One attempt on the host, shaped like the executor's Execution (run once, kill any time),
    and also started without a thread of its own (`begin`): its end comes to a callback."""

    def __init__(
        self, transport: Transport, spec: dict[str, Any], on_output: Callable[[Chunk], None]
    ) -> None:
        self.transport = transport
        self.spec = spec
        self.on_output = on_output
        self.shared: dict[str, str] = {}
        self._lock = threading.Lock()
        self._channel: Any = None
        self._number = 0
        self._kill: str | None = None
        self._on_end: Callable[[ExecResult], None] = lambda result: None
        self._started = 0.0
        self._over = False  # `_on_end` was called

    def kill(self, reason: str = "killed") -> None:
        with self._lock:
            if self._kill is None:
                self._kill = reason
            channel, number = self._channel, self._number
        if channel is not None:
            # by number: if this job has just ended, the host's next job on the channel
            # ignores it; already closed: the connection went
            with contextlib.suppress(Exception):
                channel.send(("kill", number, reason))

    def run(self) -> ExecResult:
        """Run it and wait for its end."""
        done = threading.Event()
        box: list[ExecResult] = []

        def ended(result: ExecResult) -> None:
            box.append(result)
            done.set()

        self.begin(ended)
        done.wait()
        return box[0]

    def begin(self, on_end: Callable[[ExecResult], None]) -> None:
        """Send the job to the host and return; `on_end(result)` is called once, when it has
        ended (on execnet's receiving thread, or here when it could not start)."""
        self._started = started = time.time()
        self._on_end = on_end
        site = self.transport.host.site
        with self._lock:
            if self._kill is not None:
                self._end(_ended("failed", self._kill, started))
                return
        try:
            job_channel, number = self.transport.job_channel()
        except Unreachable as exc:
            self._end(_ended("failed", str(exc), started))
            return
        except Exception as exc:
            why = _describe(exc, self.transport.ssh_said(since_up=True))
            self.transport.dropped(why)
            self._end(_ended("failed", f"cannot start the job on {site}: {why}", started))
            return
        with self._lock:
            self._channel, self._number = job_channel.channel, number
            kill = self._kill
        job_channel.attach(self)
        try:
            job_channel.channel.send(("run", number, json.dumps(self.spec)))
            if kill is not None:
                job_channel.channel.send(("kill", number, kill))
        except Exception as exc:
            self.lost(job_channel, _describe(exc))

    def remote_end(self, job_channel: JobChannel, text: str) -> None:
        """The host's end of the job: its result and the values it published."""
        done = json.loads(text)
        self.shared = dict(done["shared"])
        with self._lock:
            self._channel = None
        self.transport.keep(job_channel)
        self._end(ExecResult(**done["result"]))  # the host sends every field of one

    def lost(self, job_channel: JobChannel, why: str) -> None:
        """The channel (or the whole connection) went before the job's end came."""
        with self._lock:
            self._channel = None
        said = self.transport.ssh_said(since_up=True)
        if said:
            why = f"{why}: {said}"
        self.transport.dropped(why)
        with contextlib.suppress(Exception):  # a channel of a connection that is gone
            job_channel.channel.close()
        site = self.transport.host.site
        self._end(
            _ended(
                "failed",
                f"lost the SSH connection to {site} mid-job ({why}); "
                "the job's processes on the host were killed with it",
                self._started,
            )
        )

    def _end(self, result: ExecResult) -> None:
        with self._lock:
            if self._over:
                return
            self._over = True
        self._on_end(result)


def _ended(outcome: str, reason: str, started: float) -> ExecResult:
    return ExecResult(outcome, None, reason, started, time.time(), {}, 0, False)


def _describe(exc: BaseException, ssh_said: str = "") -> str:
    if isinstance(exc, execnet.HostNotFound):
        # its text is ssh's arguments, not why: that is in ssh's own words
        if ssh_said:  # "ssh: connect to host … port 22: Connection refused", say
            return ssh_said
        return "ssh could not connect or log in (ssh's message is in the server's log)"
    text = str(exc).strip().splitlines()
    first = text[-1] if text else ""
    said = f" ({ssh_said})" if ssh_said else ""
    return (f"{type(exc).__name__}: {first}" if first else type(exc).__name__) + said


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except OSError:
        return 0


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _exit_quietly(gw: Any, tidy: bool = False) -> None:
    if tidy:
        with contextlib.suppress(Exception):  # the far side is gone already
            # the host removes the working directories it kept for later jobs; a host that
            # does not answer soon keeps a few empty ones rather than hold up a stop
            channel = gw.remote_exec(JOB_CHANNEL)
            channel.send(("close",))
            channel.waitclose(TIDY_TIMEOUT)
    with contextlib.suppress(Exception):  # the far side is gone already
        gw.exit()
