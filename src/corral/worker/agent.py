"""The worker agent: lease jobs in batches, run them in slots, report back, drain on request.

Three kinds of thread: the leaser (asks for work when a slot is free), one thread per running
job (the executor), and the reporter (starts, logs, heartbeats and ends, sent in batches).
Heartbeats come from the reporter, so a job that floods its output cannot starve them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral.domain.models import Lease, Report, Upload
from corral.worker import tracking
from corral.worker.dataflow import AttemptData
from corral.worker.executor import Chunk as ExecChunk
from corral.worker.executor import ExecResult, ExecSpec, Execution
from corral.worker.link import Batch, Link
from corral.worker.sandbox import Sandbox, find_python
from corral.worker.task_pool import PoolOptions, TaskPool, TaskResult
from corral.worker.watchdog import Watchdog
from corral.worker.workdirs import Workdirs

log = logging.getLogger("corral.worker")

# Report a start only for jobs still running after this long: a fast job's end says it all.
START_REPORT_DELAY = 0.05
LOG_FLUSH_INTERVAL = 0.1
COALESCE_ENDS = 0.005  # seconds an end may wait for others while short jobs stream through
# Ends of single-job runs nobody waits for (fire-and-forget submits, one after another) may
# wait this long for others, to be recorded together: a transaction and a sync for several
# ends instead of one each. Any other end goes out at once, with those held back.
QUIET_ENDS = 0.01
QUIET_ENDS_MAX = 32
PREFETCH_BELOW = 0.25  # seconds: mean job length under which a worker holds extra leases
# Extra leases held per slot: about this many seconds of work at the recent mean job length,
# and at most MAX_PREFETCH (a lease request then serves dozens of millisecond jobs, while a
# worker never sits on more than half a second of work per slot that another could be doing)
PREFETCH_SECONDS = 0.5
MAX_PREFETCH = 32
# Bounds on log bytes: per report (under the server's body cap), and waiting in memory (a job
# that writes faster than the coordinator stores is slowed down, not buffered without end).
REPORT_LOG_BYTES = 2 * 1024 * 1024
PENDING_LOG_BYTES = 8 * 1024 * 1024


class CoordinatorAway(Exception):
    """The coordinator did not answer; the link has already retried with back-off."""


class Runnable(Protocol):
    """An attempt being run: here by the executor, or on a fleet host over SSH."""

    def run(self) -> ExecResult: ...

    def kill(self, reason: str = "killed") -> None: ...


@dataclass
class Slot:
    lease: Lease
    execution: Runnable | None = None
    started_at: float = field(default_factory=time.time)
    start_reported: bool = False
    seq: int = 0
    stop_reason: str = ""
    done: bool = False  # its end is recorded (the runner counts it free once)
    data: AttemptData | None = None  # its inputs and outputs, when it has any


@dataclass(frozen=True)
class AgentOptions:
    slots: int = 1
    workdir: str = ""
    grace: float = 5.0
    log_limit: int = 16 * 1024 * 1024
    max_offline: float = 0.0  # stop after this long without the coordinator; 0 = never
    long_poll: float = 20.0
    env: dict[str, str] = field(default_factory=dict)
    task_cache: str = ""  # where task sources are kept by hash ("" = $CORRAL_HOME/task-sources)
    run_as: tuple[int, int] | None = None  # (uid, gid) jobs run as; None = the worker's own
    bwrap: str = ""  # the bubblewrap that boxes code jobs; "" = this worker runs no code
    hide: tuple[str, ...] = ()  # directories a sandboxed job must not see (worker state)
    python: str = field(default_factory=find_python)  # the interpreter of code jobs


class Agent:
    def __init__(self, link: Link, options: AgentOptions) -> None:
        self.link = link
        self.options = options
        # One lock, and a condition for each kind of thread, so that an event wakes only the
        # threads it concerns: a fleet holds hundreds of these threads, and waking every one of
        # them at each job's end cost more CPU than the jobs.
        self._mutex = threading.Lock()
        self._lock = threading.Condition(self._mutex)  # room for more log bytes
        self._work = threading.Condition(self._mutex)  # a lease is waiting for a slot
        self._wants = threading.Condition(self._mutex)  # the leaser may want more leases
        self._news = threading.Condition(self._mutex)  # the reporter has something to send
        self._slots: dict[int, Slot] = {}  # every lease held: waiting or running
        self._waiting: deque[Slot] = deque()
        self._running = 0
        self._durations: deque[float] = deque(maxlen=32)
        self._extra = 0  # extra leases to hold now (`_prefetch`), from the recent mean
        self._pending = Batch()
        self._pending_log_bytes = 0
        self._pending_urgent = False  # an end waiting to be reported may not be held back
        self._quiet_gathering = False  # the reporter waits for more ends that may wait
        self._draining = False
        self._stopping = False  # forced: kill jobs, release leases, leave
        self._stopped = threading.Event()
        self._offline_since: float | None = None
        self._threads: list[threading.Thread] = []
        self.error: str = ""
        self._task_pool: TaskPool | None = None
        self._workdirs = Workdirs()  # attempts' directories kept for the next attempts
        self._watchdog = Watchdog()  # ends the jobs' processes if this process dies first

    # -- public --------------------------------------------------------------------------

    #: whether the agent leases and reports for itself; a fleet's sites are leased for, and
    #: report, all at once
    leases_itself = True
    reports_itself = True
    #: whether each slot is a thread that waits for its job's end; a fleet host's jobs end in
    #: a callback instead
    runs_in_threads = True

    def start(self) -> None:
        targets = [(self._report_loop, "reporter")] if self.reports_itself else []
        if self.leases_itself:
            targets.insert(0, (self._lease_loop, "leaser"))
        if self.runs_in_threads:
            targets += [(self._runner, f"slot-{i}") for i in range(self.options.slots)]
        for target, name in targets:
            t = threading.Thread(target=target, name=f"corral-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def run(self) -> None:
        """Start and block until stopped (drained, forced, or offline too long)."""
        self.start()
        self._stopped.wait()
        # not the leaser: it may sit in a long-poll whose answer no longer matters (nothing is
        # leased to a draining worker, and leases for a connection that hung up go back)
        for t in self._threads:
            if t.name != "corral-leaser":
                t.join(1.0)

    def drain(self) -> None:
        """No new leases; running jobs finish; then the agent stops."""
        with self._lock:
            if self._draining:
                return
            self._draining = True
            self._wake_all()
        try:
            self.link.drain()
        except Exception as exc:  # the coordinator may be away; draining goes on locally
            log.warning("could not tell the coordinator about the drain: %s", exc)
        self.link.interrupt()  # the leaser's wait ends now, not when its long-poll runs out
        self._maybe_done()

    def stop(self, reason: str = "the worker was stopped") -> None:
        """Kill running jobs and give their leases back at once."""
        with self._lock:
            self._draining = True
            self._stopping = True
            slots = list(self._slots.values())
            self._release_waiting()
            self._wake_all()
        self.link.interrupt()
        for slot in slots:
            slot.stop_reason = reason
            execution = slot.execution  # read once: an end clears it (`_finished`)
            if execution is not None:
                execution.kill(reason)
        self._maybe_done()

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)

    @property
    def busy(self) -> int:
        with self._lock:
            return self._running

    def running(self) -> bool:
        """Whether a job runs now: a glance without the lock, for a caller deciding whether
        to wait for more ends (an int is read whole)."""
        return self._running > 0

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # -- leasing -------------------------------------------------------------------------

    def _prefetch(self) -> int:
        """Extra leases to hold while every slot is busy: only while jobs are short.

        Holding a lease for a long job would keep it from an idle worker elsewhere; for jobs
        of a few milliseconds the round trip to lease is the cost that matters.
        """
        return self._extra

    def _note_duration(self, seconds: float) -> None:
        """A job's run time; `_prefetch` is asked on every look at what the agent wants, so
        how many extra leases to hold is worked out here, once per end."""
        self._durations.append(seconds)
        mean = sum(self._durations) / len(self._durations)
        if len(self._durations) < 4 or mean >= PREFETCH_BELOW:
            self._extra = 0
            return
        per_slot = min(MAX_PREFETCH, max(1, int(PREFETCH_SECONDS / max(mean, 1e-6))))
        self._extra = self.options.slots * per_slot

    def _refill_below(self) -> int:
        extra = self._prefetch()
        return self.options.slots + extra // 2 - (0 if extra else 1)

    def wanted(self) -> int:
        """How many leases to ask for now (0: none yet, or draining)."""
        with self._lock:
            return self._wanted_locked()

    def _wanted_locked(self) -> int:
        # with extra leases held, refill only below half of them: one lease request for
        # several jobs instead of one per job
        if self._draining or len(self._slots) > self._refill_below():
            return 0
        return self.options.slots + self._prefetch() - len(self._slots)

    def accept(self, leases: list[Lease]) -> None:
        """Leases made for this agent: to its slots (back at once when it is leaving)."""
        with self._lock:
            if self._draining:
                # leased while a drain began: give them straight back
                self._pending.released.extend((x.attempt_id, x.token) for x in leases)
                self._wake_all()
                return
            for lease in leases:
                slot = Slot(lease)
                self._slots[lease.attempt_id] = slot
                self._waiting.append(slot)
            self._work.notify(len(leases))

    def _lease_loop(self) -> None:
        while True:
            with self._lock:
                while not self._draining and not self._wanted_locked():
                    self._wants.wait()
                if self._draining:
                    return
                want = self._wanted_locked()
            try:
                leases = self.link.lease(want, self.options.long_poll)
            except CoordinatorAway as exc:
                if self._offline_too_long(str(exc)):
                    return
                continue
            except Exception as exc:
                if self._draining:
                    return  # leaving anyway (the link may be closed under us): not an error
                log.error("leasing failed: %s", exc)
                self.error = str(exc)
                if self._offline_too_long(str(exc)):
                    return
                time.sleep(1.0)
                continue
            self._online()
            self.accept(leases)
            if self._draining:
                return

    def _release_waiting(self) -> None:
        """Give back leases not yet started (caller holds the lock)."""
        while self._waiting:
            slot = self._waiting.popleft()
            self._slots.pop(slot.lease.attempt_id, None)
            self._pending.released.append((slot.lease.attempt_id, slot.lease.token))

    def _runner(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._draining:
                    self._work.wait()
                if self._draining and not self._waiting:
                    return
                if self._draining:
                    self._release_waiting()
                    self._wake_all()
                    return
                slot = self._waiting.popleft()
                self._running += 1
                slot.started_at = time.time()
            try:
                self._run_slot(slot)
            finally:
                with self._lock:
                    # the slot's end (`_finished`) frees it and says so; here only when the
                    # job left without one
                    if not slot.done:
                        slot.done = True
                        self._running -= 1
                        self._slot_freed()

    def _run_slot(self, slot: Slot) -> None:
        lease = slot.lease

        def note(text: str) -> None:
            self._output(slot, ExecChunk("corral", time.time(), f"[corral] {text}\n"))

        try:
            slot.data = AttemptData.of(
                self.link, lease.attempt_id, lease.payload, note, lambda: self._stopping
            )
            execution = self._execution(lease, lambda c: self._output(slot, c))
        except ValueError as exc:
            self._finished(
                slot, Report(lease.attempt_id, lease.token, "failed", None, str(exc), time.time())
            )
            return
        self._run_execution(slot, execution)

    def _run_execution(self, slot: Slot, execution: Runnable) -> None:
        slot.execution = execution
        if slot.stop_reason:
            execution.kill(slot.stop_reason)
        self._ended(slot, execution.run())

    def _ended(self, slot: Slot, result: ExecResult) -> None:
        """A slot's job has ended: its end goes to the reporter (or, stopping, its lease back)."""
        lease = slot.lease
        if self._stopping and result.outcome == "canceled":
            with self._lock:
                self._pending.released.append((lease.attempt_id, lease.token))
                self._slots.pop(lease.attempt_id, None)
                slot.execution = None  # (as in `_finished`)
                slot.done = True
                self._running -= 1
                self._wake_all()
            self._maybe_done()
            return
        outcome = result.outcome if result.outcome != "canceled" else "failed"
        reason = result.reason
        data = slot.data
        if data is not None and data.problem and outcome == "passed":
            outcome, reason = "failed", data.problem
        self._finished(
            slot,
            Report(
                lease.attempt_id,
                lease.token,
                outcome,
                result.exit_code,
                reason,
                result.started_at,
                dict(result.resources),
                result.value if isinstance(result, TaskResult) else None,
                tuple(data.outputs) if data is not None else (),
            ),
        )

    def _tasks(self) -> TaskPool:
        """The task processes, started with the first task job (shell-only workers need none)."""
        with self._lock:
            if self._task_pool is None:
                from corral.config import corral_home

                cache = self.options.task_cache or str(corral_home() / "task-sources")
                self._task_pool = TaskPool(
                    self.link.task_source,
                    PoolOptions(
                        cache_dir=cache,
                        workdir_root=self.options.workdir,
                        log_limit=self.options.log_limit,
                        watchdog=self._watchdog,
                    ),
                )
            return self._task_pool

    def _close_tasks(self) -> None:
        with self._lock:
            pool, self._task_pool = self._task_pool, None
        if pool is not None:
            pool.close()
        self._workdirs.close()
        self._watchdog.close()
        tracking.release()

    def _job_env(self, lease: Lease) -> dict[str, str]:
        env = dict(self.options.env)
        env.update(lease.payload.get("env") or {})
        env.update(
            {
                "CORRAL_RUN": str(lease.run_id),
                "CORRAL_RUN_NAME": lease.run_name,
                "CORRAL_JOB": lease.job_name,
                "CORRAL_ATTEMPT": str(lease.number),
                "CORRAL_WORKER": self.link.worker_name,
            }
        )
        return env

    def _execution(self, lease: Lease, on_output: Callable[[ExecChunk], None]) -> Runnable:
        """How the attempt runs: in a task process, or by the executor here (the fleet's host
        agents run it over SSH instead)."""
        data = self._data(lease)
        if lease.payload.get("kind") == "task":
            if data is None:
                return self._tasks().call(lease, self._job_env(lease), on_output)
            return self._tasks().call(
                lease,
                self._job_env(lease),
                on_output,
                prepare=data.prepare,
                collect=data.collect,
                keep_stdout=data.keep_stdout,
            )
        return Execution(self._exec_spec(lease), on_output)

    def _data(self, lease: Lease) -> AttemptData | None:
        with self._lock:
            slot = self._slots.get(lease.attempt_id)
        return slot.data if slot is not None else None

    def _exec_spec(self, lease: Lease) -> ExecSpec:
        payload = lease.payload
        kind = payload.get("kind")
        if kind not in ("command", "code") or (kind == "code" and not self.options.bwrap):
            raise ValueError(f"this worker cannot run {kind} jobs")
        env = dict(self.options.env)
        env.update(payload.get("env") or {})
        names = payload.get("secrets") or []
        values = payload.get("secret_values") or {}
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"the server holds no secret {', '.join(missing)} any more")
        env.update({n: values[n] for n in names})
        sudo = payload.get("sudo")
        if sudo and sudo not in values:
            raise ValueError(f"the server holds no secret {sudo} any more")
        env.update(
            {
                "CORRAL_RUN": str(lease.run_id),
                "CORRAL_RUN_NAME": lease.run_name,
                "CORRAL_JOB": lease.job_name,
                "CORRAL_ATTEMPT": str(lease.number),
                "CORRAL_WORKER": self.link.worker_name,
            }
        )
        argv = payload.get("argv")
        box = None
        if kind == "code":
            argv = [self.options.python, "-c", payload["code"]]
            box = Sandbox(self.options.bwrap, bool(payload.get("network")), self.options.hide)
        return ExecSpec(
            command=payload.get("command") if kind == "command" else None,
            argv=tuple(argv) if argv else None,
            limits=payload.get("limits") or {},
            sandbox=box,
            user=self.options.run_as,
            mask=tuple(values[n] for n in names) + ((values[sudo],) if sudo else ()),
            sudo_password=values[sudo] if sudo else None,
            env=env,
            workdir_root=self.options.workdir,
            timeout=lease.timeout,
            grace=self.options.grace,
            log_limit=self.options.log_limit,
            workdirs=self._workdirs,
            watchdog=self._watchdog,
            **_hooks(self._data(lease)),
        )

    def _output(self, slot: Slot, chunk: ExecChunk) -> None:
        with self._lock:
            while self._pending_log_bytes > PENDING_LOG_BYTES and not self._stopping:
                self._lock.wait(1.0)
            self._pending_log_bytes += len(chunk.data)
            self._pending.logs.append(
                Upload(
                    slot.lease.attempt_id,
                    slot.lease.token,
                    slot.seq,
                    chunk.stream,
                    chunk.ts,
                    chunk.data,
                )
            )
            slot.seq += 1

    def _finished(self, slot: Slot, outcome: Report) -> None:
        urgent = not self.link.may_hold_end(slot.lease.run_id)
        with self._lock:
            self._note_duration(time.time() - slot.started_at)
            self._pending.finished.append(outcome)
            self._pending_urgent = self._pending_urgent or urgent
            self._slots.pop(slot.lease.attempt_id, None)
            # its execution's output callback holds the slot: without this link the two are
            # freed as soon as the job is done with, not left for the garbage collector
            slot.execution = None
            # count the slot free before the reporter looks: it waits for other ends only
            # while jobs are still running
            if not slot.done:
                slot.done = True
                self._running -= 1
            self._slot_freed()

    # -- reporting -----------------------------------------------------------------------

    def heartbeat_interval(self) -> float:
        return max(min(self.link.lease_ttl / 3.0, 10.0), 0.05)

    def _report_loop(self) -> None:
        interval = self.heartbeat_interval()
        next_beat = time.monotonic() + interval
        while True:
            with self._lock:
                timeout = min(next_beat - time.monotonic(), LOG_FLUSH_INTERVAL)
                if not self._has_news() and timeout > 0:
                    self._news.wait(timeout)
                if self._quiet_ends():
                    self._gather_quiet_ends()
                elif self._pending.finished and self._prefetch() and self._running:
                    # a stream of short jobs: let a few more ends join this report
                    self._news.wait(COALESCE_ENDS)
                now = time.monotonic()
                beat = now >= next_beat
                if beat:
                    next_beat = now + interval
                batch, done = self._collect_locked(beat)
            if done:
                self.stop_reporting()
                return
            if not batch:
                continue
            self._send(batch)

    def _quiet_ends(self) -> bool:
        """Only ends that may be held back wait to be reported (the caller holds the lock)."""
        return bool(self._pending.finished) and not (
            self._pending_urgent or self._draining or self._pending.released
        )

    def _gather_quiet_ends(self) -> None:
        """Let more ends that may be held back join the report, up to QUIET_ENDS; any other
        end, enough ends, or a drain ends the wait (the caller holds the lock)."""
        until = time.monotonic() + QUIET_ENDS
        self._quiet_gathering = True
        try:
            while (
                self._quiet_ends()
                and len(self._pending.finished) < QUIET_ENDS_MAX
                and (left := until - time.monotonic()) > 0
            ):
                self._news.wait(left)
        finally:
            self._quiet_gathering = False

    def _has_news(self) -> bool:
        """Something to report before the next flush is due (the caller holds the lock)."""
        return bool(
            self._pending.finished
            or self._pending.released
            or self._pending_log_bytes >= REPORT_LOG_BYTES
        )

    def collect(self, beat: bool) -> tuple[Batch, bool]:
        with self._lock:
            return self._collect_locked(beat)

    def _collect_locked(self, beat: bool) -> tuple[Batch, bool]:
        """What to report now (with heartbeats for every lease held when `beat`), and whether
        the agent is done: draining, with nothing held and nothing left to say."""
        batch, self._pending = self._pending, Batch()
        self._pending_urgent = False
        self._split_logs(batch)
        wall = time.time()
        for slot in self._slots.values():
            if slot.execution is None:
                continue  # still waiting for a free slot
            if not slot.start_reported and wall - slot.started_at >= START_REPORT_DELAY:
                slot.start_reported = True
                batch.started.append((slot.lease.attempt_id, slot.lease.token, slot.started_at))
        if beat:
            batch.heartbeats = [(s.lease.attempt_id, s.lease.token) for s in self._slots.values()]
        done = self._draining and not self._slots and not batch
        return batch, done

    def say_again(self, batch: Batch) -> None:
        """A report that did not go out: what it held goes first in the next one (each part
        is safe to say twice: the coordinator records it once)."""
        with self._lock:
            p = self._pending
            self._pending = Batch(
                started=batch.started + p.started,
                heartbeats=batch.heartbeats + p.heartbeats,
                logs=batch.logs + p.logs,
                finished=batch.finished + p.finished,
                released=batch.released + p.released,
            )
            self._pending_log_bytes += sum(len(c.data) for c in batch.logs)

    def stop_reporting(self) -> None:
        """Drained: nothing held, everything said."""
        self._close_tasks()
        self._stopped.set()

    def _split_logs(self, batch: Batch) -> None:
        """Keep at most REPORT_LOG_BYTES of logs in this batch; the rest waits for the next."""
        size, keep = 0, 0
        for chunk in batch.logs:
            if keep and size + len(chunk.data) > REPORT_LOG_BYTES:
                break
            size += len(chunk.data)
            keep += 1
        if keep < len(batch.logs):
            self._pending.logs = batch.logs[keep:]
            batch.logs = batch.logs[:keep]
            # ends must follow their logs: hold them back until the logs are out (and report
            # them as soon as the logs are, as if they could not wait)
            self._pending.finished, batch.finished = batch.finished, []
            self._pending_urgent = bool(self._pending.finished)
            self._pending.released, batch.released = batch.released, []
        self._pending_log_bytes -= size
        self._lock.notify_all()

    def _send(self, batch: Batch) -> None:
        while True:
            try:
                answer = self.link.report(batch, "the worker was stopped before the job ended")
                self._online()
                break
            except Exception as exc:
                if self._offline_too_long(str(exc)):
                    return
                time.sleep(0.5)
        self.lost(answer.lost)

    def lost(self, attempt_ids: Sequence[int]) -> None:
        """Stop the attempts among these that this agent runs: their leases are gone."""
        for attempt_id in attempt_ids:
            with self._lock:
                slot = self._slots.get(attempt_id)
            execution = slot.execution if slot is not None else None  # read once, as in `stop`
            if execution is not None:
                execution.kill("canceled: the lease is no longer held (canceled or expired)")

    # -- being offline -------------------------------------------------------------------

    def _online(self) -> None:
        self._offline_since = None

    def _offline_too_long(self, why: str) -> bool:
        now = time.monotonic()
        if self._offline_since is None:
            self._offline_since = now
            log.warning("coordinator unreachable: %s", why)
        limit = self.options.max_offline
        if limit and now - self._offline_since > limit:
            self.error = f"no coordinator for {limit:.0f}s: stopping ({why})"
            log.error(self.error)
            self.stop(self.error)
            self._close_tasks()
            self._stopped.set()
            return True
        return False

    def _maybe_done(self) -> None:
        with self._lock:
            self._wake_all()

    def _wake_all(self) -> None:
        """Every thread looks again (a drain or a stop; the caller holds the lock)."""
        for cond in (self._lock, self._work, self._wants, self._news):
            cond.notify_all()

    def _slot_freed(self) -> None:
        """A job ended or left its slot: the reporter has its end, the leaser may refill."""
        pending = len(self._pending.finished)
        if self._quiet_gathering:
            # the reporter holds back ends that may wait: wake it for one that may not, or
            # when there are enough for a report
            wake = self._pending_urgent or pending >= QUIET_ENDS_MAX
        else:
            # the first end wakes the reporter; later ones join its report while it gathers
            wake = pending <= 1 or not self._running
        if wake:
            self._news.notify()
        if self._wanted_locked():
            self._wants.notify()
        self._may_want_more()

    def _may_want_more(self) -> None:
        """Hook for a leaser outside the agent (the caller holds the lock)."""


def _hooks(data: AttemptData | None) -> dict[str, Any]:
    """The executor's dataflow hooks for an attempt (none for a job without dataflow)."""
    if data is None:
        return {}
    return {"prepare": data.prepare, "collect": data.collect, "keep_stdout": data.keep_stdout}


def default_name() -> str:
    return os.uname().nodename.split(".")[0] or "worker"


def on_signal(agent: Agent, echo: Callable[[str], None]) -> Callable[[int, object], None]:
    """First SIGTERM/SIGINT drains; a second one kills the jobs and releases their leases."""
    count = {"n": 0}

    def handler(signum: int, _frame: object) -> None:
        count["n"] += 1
        if count["n"] == 1:
            echo("draining: no new jobs; running jobs finish (signal again to stop them now)")
            threading.Thread(target=agent.drain, daemon=True).start()
        else:
            echo("stopping: killing running jobs and releasing their leases")
            threading.Thread(target=agent.stop, daemon=True).start()

    return handler
