"""The job state machine, exhaustively: every (state, event) pair against a table written here."""

from __future__ import annotations

import itertools

import pytest

from corral.domain.states import (
    ENDED,
    FAILURES,
    TRANSITIONS,
    Event,
    JobState,
    RunState,
    TransitionError,
    next_state,
    run_state,
    sources,
)

# Written out by hand from the design, NOT derived from TRANSITIONS: (state, event) -> target.
# Every pair not listed here must raise TransitionError.
EXPECTED: dict[tuple[str, str], str] = {
    ("blocked", "ready"): "queued",
    ("blocked", "skip"): "skipped",
    ("blocked", "cancel"): "canceled",
    ("queued", "lease"): "leased",
    ("queued", "cancel"): "canceled",
    ("leased", "start"): "running",
    ("leased", "pass"): "passed",
    ("leased", "fail"): "failed",
    ("leased", "time_out"): "timed_out",
    ("leased", "retry"): "queued",
    ("leased", "expire"): "queued",
    ("leased", "expire_lost"): "lost",
    ("leased", "release"): "queued",
    ("leased", "cancel"): "canceled",
    ("running", "pass"): "passed",
    ("running", "fail"): "failed",
    ("running", "time_out"): "timed_out",
    ("running", "retry"): "queued",
    ("running", "expire"): "queued",
    ("running", "expire_lost"): "lost",
    ("running", "release"): "queued",
    ("running", "cancel"): "canceled",
    ("passed", "rerun"): "queued",
    ("passed", "block"): "blocked",
    ("failed", "rerun"): "queued",
    ("failed", "block"): "blocked",
    ("timed_out", "rerun"): "queued",
    ("timed_out", "block"): "blocked",
    ("canceled", "rerun"): "queued",
    ("canceled", "block"): "blocked",
    ("lost", "rerun"): "queued",
    ("lost", "block"): "blocked",
    ("skipped", "rerun"): "queued",
    ("skipped", "block"): "blocked",
}

ALL_STATES = [
    "blocked",
    "queued",
    "leased",
    "running",
    "passed",
    "failed",
    "timed_out",
    "canceled",
    "lost",
    "skipped",
]
ALL_EVENTS = [
    "ready",
    "skip",
    "block",
    "lease",
    "start",
    "pass",
    "fail",
    "time_out",
    "retry",
    "expire",
    "expire_lost",
    "release",
    "cancel",
    "rerun",
]


def test_the_enums_hold_exactly_the_states_and_events_of_the_design() -> None:
    assert sorted(s.value for s in JobState) == sorted(ALL_STATES)
    assert sorted(e.value for e in Event) == sorted(ALL_EVENTS)


@pytest.mark.parametrize(
    ("state", "event"),
    list(itertools.product(ALL_STATES, ALL_EVENTS)),
    ids=lambda v: v,
)
def test_every_state_event_pair(state: str, event: str) -> None:
    s, e = JobState(state), Event(event)
    expected = EXPECTED.get((state, event))
    if expected is None:
        with pytest.raises(TransitionError) as info:
            next_state(s, e)
        assert info.value.state is s
        assert info.value.event is e
        assert state in str(info.value) and event in str(info.value)
        assert (s, e) not in TRANSITIONS
    else:
        assert next_state(s, e) is JobState(expected)
        assert TRANSITIONS[(s, e)] is JobState(expected)


def test_the_table_has_no_transition_the_expected_table_lacks() -> None:
    actual = {(s.value, e.value): t.value for (s, e), t in TRANSITIONS.items()}
    assert actual == EXPECTED


def test_transition_error_is_a_value_error() -> None:
    assert issubclass(TransitionError, ValueError)


def test_sources_lists_every_state_an_event_is_allowed_from() -> None:
    for event in ALL_EVENTS:
        want = {s for (s, e) in EXPECTED if e == event}
        assert {s.value for s in sources(Event(event))} == want, event


def test_ended_failures_and_active() -> None:
    assert {s.value for s in ENDED} == {
        "passed",
        "failed",
        "timed_out",
        "canceled",
        "lost",
        "skipped",
    }
    assert {s.value for s in FAILURES} == {"failed", "timed_out", "lost"}
    assert {s.value for s in JobState if s.active} == {"leased", "running"}
    assert {s.value for s in JobState if s.ended} == {s.value for s in ENDED}


def test_ended_states_take_no_event_but_rerun_and_block() -> None:
    for state in ENDED:
        allowed = {e.value for e in Event if (state, e) in TRANSITIONS}
        assert allowed == {"rerun", "block"}, state


J = JobState


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], RunState.PASSED),
        ([J.QUEUED], RunState.QUEUED),
        ([J.BLOCKED, J.QUEUED], RunState.QUEUED),
        ([J.LEASED, J.QUEUED], RunState.RUNNING),
        ([J.RUNNING], RunState.RUNNING),
        ([J.PASSED, J.BLOCKED], RunState.RUNNING),
        ([J.FAILED, J.QUEUED], RunState.RUNNING),
        ([J.PASSED], RunState.PASSED),
        ([J.PASSED, J.SKIPPED], RunState.PASSED),
        ([J.SKIPPED], RunState.PASSED),
        ([J.PASSED, J.FAILED], RunState.FAILED),
        ([J.PASSED, J.TIMED_OUT], RunState.FAILED),
        ([J.PASSED, J.LOST], RunState.FAILED),
        ([J.FAILED, J.CANCELED], RunState.FAILED),
        ([J.PASSED, J.CANCELED], RunState.CANCELED),
        ([J.CANCELED, J.SKIPPED], RunState.CANCELED),
    ],
    ids=lambda v: "-".join(s.value for s in v) if isinstance(v, list) else v.value,
)
def test_run_state(states: list[JobState], expected: RunState) -> None:
    assert run_state(states) is expected
    assert run_state(iter(states)) is expected  # any iterable, consumed once


def test_run_state_ended_flag() -> None:
    assert {s.value for s in RunState if s.ended} == {"passed", "failed", "canceled"}
