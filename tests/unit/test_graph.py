"""The needs graph: checks at submit, readiness when jobs end, what a rerun resets."""

from __future__ import annotations

import sys
import time

import pytest

from corral.domain.runspec import JobSpec
from corral.domain.states import Event, JobState
from corral.scheduler.graph import Node, check_graph, downstream, find_cycle, readiness

S = JobState


def node(id: int, name: str, state: JobState, needs: tuple[str, ...] = (), when: str = "success"):
    return Node(id, name, state, needs, when)


def decide(nodes: list[Node]) -> dict[int, Event]:
    return dict(readiness(nodes))


# -- readiness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("need_state", "when", "event"),
    [
        (S.PASSED, "success", Event.READY),
        (S.PASSED, "failure", Event.SKIP),
        (S.PASSED, "always", Event.READY),
        (S.FAILED, "success", Event.SKIP),
        (S.FAILED, "failure", Event.READY),
        (S.FAILED, "always", Event.READY),
        (S.TIMED_OUT, "success", Event.SKIP),
        (S.TIMED_OUT, "failure", Event.READY),
        (S.LOST, "success", Event.SKIP),
        (S.LOST, "failure", Event.READY),
        (S.CANCELED, "success", Event.SKIP),
        (S.CANCELED, "failure", Event.READY),
        (S.CANCELED, "always", Event.READY),
    ],
)
def test_readiness_by_when(need_state: JobState, when: str, event: Event) -> None:
    nodes = [node(1, "a", need_state), node(2, "b", S.BLOCKED, ("a",), when)]
    assert decide(nodes) == {2: event}


@pytest.mark.parametrize(
    ("need_when", "when", "event"),
    [
        # a failure hook that did not fire counts as fine: it blocks nothing after it
        ("failure", "success", Event.READY),
        ("failure", "failure", Event.SKIP),
        ("failure", "always", Event.READY),
        # a job skipped because its needs failed passes the failure on
        ("success", "success", Event.SKIP),
        ("success", "failure", Event.READY),
        ("success", "always", Event.READY),
    ],
)
def test_a_skipped_need_counts_by_why_it_was_skipped(
    need_when: str, when: str, event: Event
) -> None:
    nodes = [node(1, "a", S.SKIPPED, when=need_when), node(2, "b", S.BLOCKED, ("a",), when)]
    assert decide(nodes) == {2: event}


def test_a_failure_stops_the_whole_chain_after_it() -> None:
    # a failed; b (after a) was skipped; c (after b) must be skipped too, not run
    nodes = [
        node(1, "a", S.FAILED),
        node(2, "b", S.SKIPPED, ("a",)),
        node(3, "c", S.BLOCKED, ("b",)),
        node(4, "hook", S.BLOCKED, ("b",), "failure"),
    ]
    assert decide(nodes) == {3: Event.SKIP, 4: Event.READY}


@pytest.mark.parametrize("state", [S.BLOCKED, S.QUEUED, S.LEASED, S.RUNNING])
def test_not_ready_while_a_need_has_not_ended(state: JobState) -> None:
    nodes = [
        node(1, "a", S.PASSED),
        node(2, "b", state),
        node(3, "c", S.BLOCKED, ("a", "b"), "always"),
    ]
    assert 3 not in decide(nodes)


def test_one_failed_need_among_several() -> None:
    nodes = [
        node(1, "a", S.PASSED),
        node(2, "b", S.FAILED),
        node(3, "ok", S.BLOCKED, ("a", "b")),
        node(4, "hook", S.BLOCKED, ("a", "b"), "failure"),
    ]
    assert decide(nodes) == {3: Event.SKIP, 4: Event.READY}


def test_fanout_copies_share_a_name_and_all_must_end() -> None:
    copies = [node(1, "deploy", S.PASSED), node(2, "deploy", S.RUNNING)]
    after = node(3, "snapshot", S.BLOCKED, ("deploy",))
    hook = node(4, "alert", S.BLOCKED, ("deploy",), "failure")
    assert decide([*copies, after, hook]) == {}
    copies[1] = node(2, "deploy", S.PASSED)
    assert decide([*copies, after, hook]) == {3: Event.READY, 4: Event.SKIP}
    copies[1] = node(2, "deploy", S.FAILED)
    assert decide([*copies, after, hook]) == {3: Event.SKIP, 4: Event.READY}


def test_only_blocked_jobs_are_decided() -> None:
    nodes = [
        node(1, "a", S.PASSED),
        node(2, "b", S.QUEUED, ("a",)),
        node(3, "c", S.PASSED, ("a",)),
        node(4, "d", S.SKIPPED, ("a",)),
    ]
    assert decide(nodes) == {}


def test_a_blocked_job_without_needs_is_ready() -> None:
    assert decide([node(1, "a", S.BLOCKED)]) == {1: Event.READY}


def test_readiness_is_one_step_at_a_time() -> None:
    # c waits on b, which is itself still blocked on a: only b is decided now
    nodes = [
        node(1, "a", S.PASSED),
        node(2, "b", S.BLOCKED, ("a",)),
        node(3, "c", S.BLOCKED, ("b",)),
    ]
    assert decide(nodes) == {2: Event.READY}


# -- downstream ------------------------------------------------------------------------------


def test_downstream() -> None:
    nodes = [
        node(1, "a", S.PASSED),
        node(2, "b", S.PASSED, ("a",)),
        node(3, "c", S.PASSED, ("b",)),
        node(4, "d", S.PASSED),
        node(5, "e", S.PASSED, ("d", "a")),
        node(6, "deploy", S.PASSED, ("d",)),
        node(7, "deploy", S.PASSED, ("d",)),
        node(8, "alert", S.SKIPPED, ("deploy",), "failure"),
    ]
    assert downstream(nodes, ["a"]) == {"a", "b", "c", "e"}
    assert downstream(nodes, ["b"]) == {"b", "c"}
    assert downstream(nodes, ["c"]) == {"c"}
    assert downstream(nodes, ["d"]) == {"d", "e", "deploy", "alert"}
    assert downstream(nodes, []) == set()
    assert downstream(nodes, ["a", "d"]) == {"a", "b", "c", "d", "e", "deploy", "alert"}


def test_downstream_of_a_deep_chain() -> None:
    n = 5000
    nodes = [node(0, "j0", S.PASSED)]
    nodes += [node(i, f"j{i}", S.PASSED, (f"j{i - 1}",)) for i in range(1, n)]
    assert downstream(nodes, ["j0"]) == {f"j{i}" for i in range(n)}


# -- cycles ----------------------------------------------------------------------------------


def test_find_cycle_small() -> None:
    assert find_cycle({}) is None
    assert find_cycle({"a": [], "b": ["a"]}) is None
    assert find_cycle({"a": ["a"]}) == ["a"]
    cycle = find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]})
    assert cycle is not None
    assert sorted(cycle) == ["a", "b", "c"]
    # a diamond is not a cycle
    assert find_cycle({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) is None
    # names outside the mapping are ignored
    assert find_cycle({"a": ["ghost"]}) is None


def _is_cycle(needs: dict[str, list[str]], cycle: list[str]) -> bool:
    return all(cycle[(i + 1) % len(cycle)] in needs[cycle[i]] for i in range(len(cycle)))


def test_find_cycle_on_a_deep_chain_does_not_recurse() -> None:
    n = 10_000
    assert n > sys.getrecursionlimit()
    chain = {f"j{i}": ([f"j{i + 1}"] if i + 1 < n else []) for i in range(n)}
    started = time.perf_counter()
    assert find_cycle(chain) is None
    chain[f"j{n - 1}"] = ["j0"]
    cycle = find_cycle(chain)
    assert cycle is not None
    assert len(cycle) == n
    assert _is_cycle(chain, cycle)
    assert time.perf_counter() - started < 2.0


def test_find_cycle_finds_a_cycle_deep_below_the_root() -> None:
    n = 10_000
    needs = {f"j{i}": [f"j{i + 1}"] for i in range(n - 1)}
    needs[f"j{n - 1}"] = [f"j{n - 3}"]
    cycle = find_cycle(needs)
    assert cycle is not None
    assert sorted(cycle) == sorted([f"j{n - 3}", f"j{n - 2}", f"j{n - 1}"])
    assert _is_cycle(needs, cycle)


def spec(name: str, *needs: str) -> JobSpec:
    return JobSpec(name=name, kind="command", command="x", needs=needs)


def test_check_graph() -> None:
    assert check_graph([spec("a"), spec("b", "a")]) == []
    assert check_graph([spec("a", "a")]) == [("jobs.a.needs", "a job cannot need itself")]
    assert check_graph([spec("a", "x"), spec("b", "y")]) == [
        ("jobs.a.needs", "unknown job 'x'"),
        ("jobs.b.needs", "unknown job 'y'"),
    ]
    [(field, message)] = check_graph([spec("a", "b"), spec("b", "a")])
    assert field in ("jobs.a.needs", "jobs.b.needs")
    assert message in ("needs form a cycle: a → b → a", "needs form a cycle: b → a → b")


def test_check_graph_sequential() -> None:
    assert check_graph([spec("a"), spec("b")], "sequential") == []
    [(_, message)] = check_graph([spec("a", "b"), spec("b")], "sequential")
    assert "cycle" in message


def test_check_graph_on_ten_thousand_jobs() -> None:
    n = 10_000
    jobs = [spec("j0")] + [spec(f"j{i}", f"j{i - 1}") for i in range(1, n)]
    started = time.perf_counter()
    assert check_graph(jobs) == []
    assert check_graph(jobs, "sequential") == []
    assert time.perf_counter() - started < 2.0
