"""Calls that arrive while one is running are made together: one call of the batch function.

On SQLite every write waits for the one writer, and each commit costs its own statements and
its own fsync. When twenty fleet sites lease at once, or report their ends at once, the first
caller to get in runs everyone who is waiting in one transaction; the others wait for their
part of its answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Ask = TypeVar("Ask")
Answer = TypeVar("Answer")


class _Call(Generic[Ask, Answer]):
    __slots__ = ("answer", "ask", "done", "error")

    def __init__(self, ask: Ask) -> None:
        self.ask = ask
        self.answer: Answer | None = None
        self.error: BaseException | None = None
        self.done = False


class Combiner(Generic[Ask, Answer]):
    """`combiner(ask)` runs `batch([ask, ...])` for every ask waiting, one batch at a time.

    `batch` answers each ask in order: its answer, or an exception for that ask alone. An
    exception raised by `batch` itself is every waiting caller's.
    """

    def __init__(self, batch: Callable[[list[Ask]], Sequence[Answer | Exception]]) -> None:
        self._batch = batch
        self._cond = threading.Condition()
        self._waiting: list[_Call[Ask, Answer]] = []
        self._running = False

    def __call__(self, ask: Ask) -> Answer:
        call: _Call[Ask, Answer] = _Call(ask)
        with self._cond:
            self._waiting.append(call)
            while self._running and not call.done:
                self._cond.wait()
            if not call.done:
                # no batch is running and this call was in none: it runs the next one
                self._running = True
                calls, self._waiting = self._waiting, []
        if not call.done:
            self._run(calls)
        if call.error is not None:
            raise call.error
        return call.answer  # type: ignore[return-value]

    def _run(self, calls: list[_Call[Ask, Answer]]) -> None:
        try:
            answers = list(self._batch([c.ask for c in calls]))
            if len(answers) != len(calls):
                raise RuntimeError(f"{len(answers)} answers to {len(calls)} asks")
        except BaseException as exc:
            answers = [exc] * len(calls)  # type: ignore[list-item]
        with self._cond:
            for c, a in zip(calls, answers, strict=True):
                if isinstance(a, BaseException):
                    c.error = a
                else:
                    c.answer = a
                c.done = True
            self._running = False
            self._cond.notify_all()
