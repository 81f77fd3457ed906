"""`@corral.task`: the mark a task file puts on its functions.

Kept apart from the registry, with nothing but the standard library's `typing` to import: a
worker's task process imports every task file, and each of them imports `corral` for this
decorator alone. With the registry's parsing and the run spec behind it, that import cost a
new task process about 40 ms of CPU before its first call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])


@overload
def task(fn: F, /) -> F: ...


@overload
def task(
    *,
    name: str | None = None,
    on: Mapping[str, str] | None = None,
    timeout: str | float | None = None,
    retries: int | None = None,
) -> Callable[[F], F]: ...


def task(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    on: Mapping[str, str] | None = None,
    timeout: str | float | None = None,
    retries: int | None = None,
) -> F | Callable[[F], F]:
    """Mark a function in a task file as a corral task: ``@corral.task`` or
    ``@corral.task(name="wc", on={"platform": "linux"}, timeout="5m", retries=2)``.

    The server reads these options from the file's text, so they must be literals. The job
    that runs the task may override `on`, `timeout` and `retries`. The function is returned
    unchanged: a worker calls it as ``fn(**args)`` and stores its JSON-serialisable result.
    """
    options = {"name": name, "on": on, "timeout": timeout, "retries": retries}

    def mark(f: F) -> F:
        f.__corral_task__ = {k: v for k, v in options.items() if v is not None}  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark
