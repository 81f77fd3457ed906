"""The worker agent against an in-memory link: leasing, reporting, losing leases, stopping."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from corral.domain.models import Lease
from corral.worker import agent as agent_module
from corral.worker.agent import Agent, AgentOptions
from corral.worker.link import Answer, Batch


class FakeLink:
    """Hands out prepared leases and records every report."""

    worker_name = "fake"
    lease_ttl = 3.0

    def __init__(self) -> None:
        self.queue: deque[Lease] = deque()
        self.asked: list[int] = []
        self.batches: list[Batch] = []
        self.lost: set[int] = set()
        self.drained = False
        self.lock = threading.Lock()

    def add(
        self, attempt: int, command: str, timeout: float | None = None, run_id: int = 1
    ) -> None:
        self.queue.append(
            Lease(
                attempt_id=attempt,
                token=f"t{attempt}",
                job_id=attempt,
                run_id=run_id,
                run_name="r",
                job_name=f"j{attempt}",
                instance="",
                number=1,
                payload={"kind": "command", "command": command},
                timeout=timeout,
                ttl=self.lease_ttl,
            )
        )

    def lease(self, max_jobs: int, wait: float) -> list[Lease]:
        with self.lock:
            self.asked.append(max_jobs)
            out = [self.queue.popleft() for _ in range(min(max_jobs, len(self.queue)))]
        if not out:
            time.sleep(min(wait, 0.02))
        return out

    def report(self, batch: Batch, reason: str = "") -> Answer:
        with self.lock:
            self.batches.append(batch)
            return Answer(sorted(self.lost), False)

    def drain(self) -> None:
        self.drained = True

    def may_hold_end(self, run_id: int) -> bool:
        return False  # as a worker over HTTP: it cannot tell who waits

    def interrupt(self) -> None:
        self.interrupted = True

    def close(self) -> None:
        pass

    def ends_by_report(self) -> list[list[int]]:
        """The attempts each report ended, reports without ends left out."""
        with self.lock:
            return [[o.attempt_id for o in b.finished] for b in self.batches if b.finished]

    def finished(self) -> dict[int, tuple[str, int | None]]:
        with self.lock:
            return {
                o.attempt_id: (o.outcome, o.exit_code) for b in self.batches for o in b.finished
            }

    def released(self) -> set[int]:
        with self.lock:
            return {a for b in self.batches for a, _ in b.released}

    def logs(self, attempt: int) -> str:
        with self.lock:
            return "".join(c.data for b in self.batches for c in b.logs if c.attempt_id == attempt)


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def agent_with(link: FakeLink, slots: int = 2) -> Agent:
    agent = Agent(link, AgentOptions(slots=slots, grace=0.2, long_poll=0.05))
    agent.start()
    return agent


def test_runs_leased_jobs_and_reports_their_ends_and_output() -> None:
    link = FakeLink()
    link.add(1, "echo hello")
    link.add(2, "exit 3")
    agent = agent_with(link)
    try:
        until(lambda: len(link.finished()) == 2)
        assert link.finished() == {1: ("passed", 0), 2: ("failed", 3)}
        until(lambda: link.logs(1) == "hello\n")
    finally:
        agent.stop()


def test_job_env_names_the_run_job_and_worker() -> None:
    link = FakeLink()
    link.add(7, 'echo "$CORRAL_RUN_NAME/$CORRAL_JOB@$CORRAL_WORKER"')
    agent = agent_with(link)
    try:
        until(lambda: 7 in link.finished())
        until(lambda: link.logs(7) == "r/j7@fake\n")
    finally:
        agent.stop()


def test_a_lease_the_coordinator_calls_lost_is_killed() -> None:
    link = FakeLink()
    link.add(1, "sleep 30")
    agent = agent_with(link, slots=1)
    try:
        until(lambda: agent.busy == 1)
        started = time.monotonic()
        link.lost.add(1)  # canceled or expired: the next report's answer says so
        until(lambda: 1 in link.finished(), timeout=15)
        assert time.monotonic() - started < 12  # killed, not run to its end
        assert link.finished()[1][0] == "failed"
    finally:
        agent.stop()


def test_stop_kills_running_jobs_and_releases_their_leases() -> None:
    link = FakeLink()
    link.add(1, "sleep 30")
    agent = agent_with(link, slots=1)
    until(lambda: agent.busy == 1)
    agent.stop("test over")
    assert agent.wait_stopped(10)
    assert 1 in link.released()
    assert 1 not in link.finished()


def test_drain_takes_no_new_jobs_and_lets_running_ones_finish() -> None:
    link = FakeLink()
    link.add(1, "sleep 0.5; echo done")
    agent = agent_with(link, slots=1)
    until(lambda: agent.busy == 1)
    agent.drain()
    link.add(2, "echo never")
    assert agent.wait_stopped(10)
    assert link.drained
    assert link.finished() == {1: ("passed", 0)}
    assert 2 not in link.finished() and link.queue  # job 2 was never leased


def test_extra_leases_only_while_jobs_are_short() -> None:
    link = FakeLink()
    for i in range(1, 41):
        link.add(i, "true")
    agent = agent_with(link, slots=2)
    try:
        until(lambda: len(link.finished()) == 40)
        # after a few short jobs the agent asks for more than its slots at once
        assert max(link.asked) > 2
    finally:
        agent.stop()
    slow = Agent(FakeLink(), AgentOptions(slots=2))
    for _ in range(10):
        slow._note_duration(1.0)  # long jobs: holding extra leases would starve others
    assert slow._prefetch() == 0
    for _ in range(32):
        slow._note_duration(0.001)  # they became short: prefetch again, the most per slot
    assert slow._prefetch() == 2 * agent_module.MAX_PREFETCH
    for _ in range(32):
        slow._note_duration(0.125)  # about half a second of work held per slot, no more
    assert slow._prefetch() == 2 * 4


class WatchingLink(FakeLink):
    """A link to a coordinator in this process: it says which runs' ends may be held back
    (runs of one job nobody waits for), all but `watched_runs` here."""

    def __init__(self) -> None:
        super().__init__()
        self.watched_runs: set[int] = set()

    def may_hold_end(self, run_id: int) -> bool:
        return run_id not in self.watched_runs


def test_ends_that_may_wait_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "QUIET_ENDS", 1.0)
    link = WatchingLink()
    for i in range(1, 5):
        link.add(i, "true", run_id=10 + i)  # four runs of one job, submitted and left
    agent = agent_with(link)
    try:
        until(lambda: len(link.finished()) == 4)
        assert [sorted(ends) for ends in link.ends_by_report()] == [[1, 2, 3, 4]]
    finally:
        agent.stop()


def test_an_end_that_may_not_wait_goes_out_at_once_with_those_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_module, "QUIET_ENDS", 30.0)
    link = WatchingLink()
    link.watched_runs.add(2)
    link.add(1, "true", run_id=1)
    agent = agent_with(link)
    try:
        time.sleep(0.5)
        assert link.ends_by_report() == []  # held: run 1's end may wait
        started = time.monotonic()
        link.add(2, "true", run_id=2)  # run 2's may not
        until(lambda: len(link.finished()) == 2)
        assert time.monotonic() - started < 10
        assert sorted(link.ends_by_report()[0]) == [1, 2]
    finally:
        agent.stop()


def test_a_link_that_cannot_tell_reports_ends_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_module, "QUIET_ENDS", 30.0)
    link = FakeLink()  # a worker over HTTP: it cannot see who waits on the coordinator
    link.add(1, "true")
    agent = agent_with(link)
    try:
        started = time.monotonic()
        until(lambda: 1 in link.finished())
        assert time.monotonic() - started < 10
    finally:
        agent.stop()


def test_an_ended_job_leaves_nothing_for_the_garbage_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slot and its execution hold each other while the job runs (the output callback);
    once it has ended they go by reference counting, not at the next collection."""
    alive: list[weakref.ref[agent_module.Slot]] = []

    class Tracked(agent_module.Slot):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            alive.append(weakref.ref(self))

    monkeypatch.setattr(agent_module, "Slot", Tracked)
    link = FakeLink()
    for i in range(1, 21):
        link.add(i, "true")
    gc.disable()
    try:
        agent = agent_with(link)
        try:
            until(lambda: len(link.finished()) == 20)
            until(lambda: not agent.busy)
            # each slot thread still holds the last slot it ran, until it takes the next
            assert len(alive) == 20 and sum(ref() is not None for ref in alive) <= 2
        finally:
            agent.stop()
    finally:
        gc.enable()
