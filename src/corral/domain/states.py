"""The job state machine: every state, every event, every allowed transition, in one table."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class JobState(StrEnum):
    BLOCKED = "blocked"  # waiting on `needs`
    QUEUED = "queued"  # ready; waits for a matching worker (or a retry back-off)
    LEASED = "leased"  # a worker holds a lease; the process has not reported starting
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    LOST = "lost"  # the lease expired and no retries were left
    SKIPPED = "skipped"  # its `when` did not match how its needs ended

    @property
    def ended(self) -> bool:
        return self in ENDED

    @property
    def active(self) -> bool:
        """Held by a worker."""
        return self in (JobState.LEASED, JobState.RUNNING)


ENDED = frozenset(
    {
        JobState.PASSED,
        JobState.FAILED,
        JobState.TIMED_OUT,
        JobState.CANCELED,
        JobState.LOST,
        JobState.SKIPPED,
    }
)
# An ended job counts as a failure for `when` hooks and the run's outcome.
FAILURES = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.LOST})


class Event(StrEnum):
    READY = "ready"  # every need ended and `when` matched
    SKIP = "skip"  # every need ended and `when` did not match
    BLOCK = "block"  # a rerun put the job back behind needs that will run again
    LEASE = "lease"
    START = "start"
    PASS = "pass"
    FAIL = "fail"
    TIME_OUT = "time_out"
    RETRY = "retry"  # the attempt failed or timed out and retries remain
    EXPIRE = "expire"  # the lease ran out and retries remain: back to the queue
    EXPIRE_LOST = "expire_lost"  # the lease ran out with no retries left
    RELEASE = "release"  # the worker gave the lease back unfinished (drain with force)
    CANCEL = "cancel"
    RERUN = "rerun"


S = JobState
E = Event
_ENDED_NOT_SKIPPED = (S.PASSED, S.FAILED, S.TIMED_OUT, S.CANCELED, S.LOST)


def _rows(sources: Iterable[JobState], event: Event, target: JobState) -> dict[tuple[S, E], S]:
    return {(src, event): target for src in sources}


TRANSITIONS: dict[tuple[JobState, Event], JobState] = {
    (S.BLOCKED, E.READY): S.QUEUED,
    (S.BLOCKED, E.SKIP): S.SKIPPED,
    (S.BLOCKED, E.CANCEL): S.CANCELED,
    (S.QUEUED, E.LEASE): S.LEASED,
    (S.QUEUED, E.CANCEL): S.CANCELED,
    (S.LEASED, E.START): S.RUNNING,
    # A fast job may end before its start report is sent: the finish implies the start.
    **_rows((S.LEASED, S.RUNNING), E.PASS, S.PASSED),
    **_rows((S.LEASED, S.RUNNING), E.FAIL, S.FAILED),
    **_rows((S.LEASED, S.RUNNING), E.TIME_OUT, S.TIMED_OUT),
    **_rows((S.LEASED, S.RUNNING), E.RETRY, S.QUEUED),
    **_rows((S.LEASED, S.RUNNING), E.EXPIRE, S.QUEUED),
    **_rows((S.LEASED, S.RUNNING), E.EXPIRE_LOST, S.LOST),
    **_rows((S.LEASED, S.RUNNING), E.RELEASE, S.QUEUED),
    **_rows((S.LEASED, S.RUNNING), E.CANCEL, S.CANCELED),
    # A rerun puts an ended job back: queued if its needs are met, blocked otherwise.
    **_rows((*_ENDED_NOT_SKIPPED, S.SKIPPED), E.RERUN, S.QUEUED),
    **_rows((*_ENDED_NOT_SKIPPED, S.SKIPPED), E.BLOCK, S.BLOCKED),
}


class TransitionError(ValueError):
    """An event that is not allowed in the job's current state."""

    def __init__(self, state: JobState, event: Event) -> None:
        super().__init__(f"a job that is {state.value} cannot take the event {event.value!r}")
        self.state = state
        self.event = event


def next_state(state: JobState, event: Event) -> JobState:
    """The state `event` leads to from `state`; TransitionError when it is not allowed."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise TransitionError(state, event) from None


def sources(event: Event) -> frozenset[JobState]:
    """Every state from which `event` is allowed (used to guard UPDATEs in the store)."""
    return frozenset(src for (src, ev) in TRANSITIONS if ev is event)


class RunState(StrEnum):
    QUEUED = "queued"  # nothing has started yet
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def ended(self) -> bool:
        return self in (RunState.PASSED, RunState.FAILED, RunState.CANCELED)


def run_state(job_states: Iterable[JobState]) -> RunState:
    """A run's state follows from its jobs' states: it never needs its own transitions."""
    states = list(job_states)
    if not states:
        return RunState.PASSED
    if not all(s.ended for s in states):
        started = any(s.active or s.ended for s in states)
        return RunState.RUNNING if started else RunState.QUEUED
    if any(s in FAILURES for s in states):
        return RunState.FAILED
    if any(s is JobState.CANCELED for s in states):
        return RunState.CANCELED
    return RunState.PASSED
