"""The combiner: calls made while one runs are made together, each gets its own answer."""

from __future__ import annotations

import threading
import time

import pytest

from corral.combining import Combiner


def test_one_caller_alone_gets_its_answer() -> None:
    batches: list[list[int]] = []

    def batch(asks: list[int]) -> list[int]:
        batches.append(list(asks))
        return [a * 10 for a in asks]

    combine = Combiner(batch)
    assert combine(3) == 30
    assert combine(4) == 40
    assert batches == [[3], [4]]


def test_callers_arriving_while_a_batch_runs_go_together_in_the_next() -> None:
    first_running = threading.Event()
    let_go = threading.Event()
    batches: list[list[int]] = []

    def batch(asks: list[int]) -> list[int]:
        batches.append(list(asks))
        if asks == [0]:
            first_running.set()
            let_go.wait(10)
        return [a + 100 for a in asks]

    combine = Combiner(batch)
    answers: dict[int, int] = {}

    def ask(n: int) -> None:
        answers[n] = combine(n)

    first = threading.Thread(target=ask, args=(0,))
    first.start()
    assert first_running.wait(10)
    others = [threading.Thread(target=ask, args=(n,)) for n in range(1, 6)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 10
    while len(combine._waiting) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    let_go.set()
    for t in [first, *others]:
        t.join(10)
    assert answers == {n: n + 100 for n in range(6)}
    assert batches[0] == [0]
    assert sorted(batches[1]) == [1, 2, 3, 4, 5]  # the five waiting made one batch
    assert len(batches) == 2


def test_an_answer_that_is_an_exception_is_raised_to_its_caller_only() -> None:
    def batch(asks: list[int]) -> list[int | Exception]:
        return [KeyError(a) if a < 0 else a for a in asks]

    combine = Combiner(batch)
    with pytest.raises(KeyError):
        combine(-1)
    assert combine(2) == 2


def test_a_failing_batch_fails_every_caller_in_it_and_the_next_batch_runs() -> None:
    calls = {"n": 0}

    def batch(asks: list[int]) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the store went away")
        return list(asks)

    combine = Combiner(batch)
    with pytest.raises(RuntimeError, match="the store went away"):
        combine(1)
    assert combine(2) == 2


def test_a_wrong_number_of_answers_is_an_error_not_a_mix_up() -> None:
    combine: Combiner[int, int] = Combiner(lambda asks: [1, 2])
    with pytest.raises(RuntimeError, match="2 answers to 1 asks"):
        combine(1)
