"""Prepared statements: a SQLAlchemy statement compiled once per dialect, run on the driver.

The hot statements (lease, finish, submit, reading a run) are few and fixed; SQLAlchemy's
per-execution machinery (execution context, parameter processing, result objects, events)
costs 50 to 250 µs each, against 3 to 5 µs for the same statement on the driver's cursor. So these
are built with SQLAlchemy (one place for the SQL of both engines, types included), compiled
once, and then run straight on the connection's driver inside the caller's transaction.

Typed values still go through SQLAlchemy's own processors for the dialect (JSON, booleans),
so rows come back as they would from `Connection.execute`, as named tuples.
"""

from __future__ import annotations

import operator
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

Processor = Callable[[Any], Any]


@dataclass
class _Plan:
    sql: str
    positional: bool
    names: tuple[str, ...]  # the bind names, in the order the driver wants them (positional)
    defaults: dict[str, Any]  # values written into the statement (`col == "queued"`)
    binds: dict[str, Processor]  # SQLAlchemy's bind processors for the dialect, by name
    expanding: frozenset[str]
    row: Any  # the named tuple class of a row; None for statements returning nothing
    types: tuple[Any, ...]  # the SQLAlchemy type of each column
    # result processors, by column: found with the first rows (some need the driver's type)
    results: tuple[Processor | None, ...] | None = None
    any_results: bool = False
    # (name, its bind processor, whether it expands), in `names` order: the work of `_args`,
    # looked up once instead of once per value
    steps: tuple[tuple[str, Processor | None, bool], ...] = ()
    # positional and nothing expands (most statements, every `many`): the values in order
    # in one C call, then the processors of the few columns that have one
    pick: Callable[[Mapping[str, Any]], Any] | None = None
    processed: tuple[tuple[int, Processor], ...] = ()

    def __post_init__(self) -> None:
        self.steps = tuple((n, self.binds.get(n), n in self.expanding) for n in self.names)
        if self.positional and not self.expanding and self.names:
            if len(self.names) == 1:
                one = operator.itemgetter(self.names[0])
                self.pick = lambda values: (one(values),)
            else:
                self.pick = operator.itemgetter(*self.names)
            self.processed = tuple(
                (i, _fast_json(proc))
                for i, (_, proc, _) in enumerate(self.steps)
                if proc is not None
            )


class Prepared:
    """One statement; `params` use the names of its `bindparam`s."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, tuple[int, ...]], _Plan] = {}
        # dialect name -> (compiled, its expanding bind names, the values written into it)
        self._base: dict[str, tuple[Any, tuple[str, ...], dict[str, Any]]] = {}

    # -- running ------------------------------------------------------------------------

    def all(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        plan, args = self._bind(conn, params or {})
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(plan.sql, args)
            if plan.row is None:
                return []
            if plan.results is None:
                codes = [d[1] for d in cur.description or ()]
                plan.results = tuple(
                    t._cached_result_processor(conn.dialect, code)
                    for t, code in zip(plan.types, codes, strict=True)
                )
                plan.any_results = any(p is not None for p in plan.results)
            fetched = cur.fetchall()
        finally:
            cur.close()
        return self._rows(plan, fetched)

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def one(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        rows = self.all(conn, params)
        if len(rows) != 1:
            raise LookupError(f"expected one row, got {len(rows)}")
        return rows[0]

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement returning no rows; the count of rows it changed."""
        plan, args = self._bind(conn, params or {})
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(plan.sql, args)
            return int(cur.rowcount)
        finally:
            cur.close()

    def many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """The same statement (no RETURNING, no expanding binds) for each set of params."""
        if not params:
            return
        plan, first = self._bind(conn, params[0])
        rows = [first, *(self._args(plan, p) for p in params[1:])]
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.executemany(plan.sql, rows)
        finally:
            cur.close()

    # -- compiling ----------------------------------------------------------------------

    def _bind(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Plan, Any]:
        dialect = conn.dialect
        base = self._base.get(dialect.name)
        if base is None:
            base = self._compile(dialect)
        compiled, expanding, defaults = base
        lengths = (
            tuple(len(params[n] if n in params else defaults[n]) for n in expanding)
            if expanding
            else ()
        )
        plan = self._plans.get((dialect.name, lengths))
        if plan is None:
            plan = self._plan(dialect, compiled, expanding, defaults, lengths)
            self._plans[dialect.name, lengths] = plan
        return plan, self._args(plan, params)

    def _compile(self, dialect: Dialect) -> tuple[Any, tuple[str, ...], dict[str, Any]]:
        compiled: Any = self.statement.compile(dialect=dialect)
        expanding = tuple(sorted({name for b, name in compiled.bind_names.items() if b.expanding}))
        defaults = {
            k: v for k, v in compiled.construct_params(_check=False).items() if v is not None
        }
        base = (compiled, expanding, defaults)
        self._base[dialect.name] = base
        return base

    def _plan(
        self,
        dialect: Dialect,
        compiled: Any,
        expanding: tuple[str, ...],
        defaults: dict[str, Any],
        lengths: tuple[int, ...],
    ) -> _Plan:
        sql: str = compiled.string
        positional = bool(dialect.positional)
        size = dict(zip(expanding, lengths, strict=True))
        types = {name: b.type for b, name in compiled.bind_names.items()}
        for name, n in size.items():
            if n == 0:
                # no values: the dialect's typed subquery with no rows (PostgreSQL has no
                # empty "IN ()"); NOT IN of it is true, as it should be
                marks = compiled.visit_empty_set_expr([types[name]])
            elif positional:
                marks = ", ".join(["?"] * n)
            else:
                marks = ", ".join(f"%({name}_{i})s" for i in range(n))
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", marks)
        names = (
            tuple(compiled.positiontup or ()) if positional else tuple(compiled.bind_names.values())
        )
        columns = getattr(compiled, "_result_columns", None) or []
        row: Any = None
        if columns:
            row = namedtuple("Row", [c[0] for c in columns], rename=True)  # type: ignore[misc,no-redef]
        return _Plan(
            sql=sql,
            positional=positional,
            names=names,
            defaults=defaults,
            binds=dict(compiled._bind_processors),
            expanding=frozenset(expanding),
            row=row,
            types=tuple(c[3] for c in columns),
        )

    @staticmethod
    def _args(plan: _Plan, params: Mapping[str, Any]) -> Any:
        values = {**plan.defaults, **params} if plan.defaults else params
        if plan.pick is not None:
            if not plan.processed:
                return plan.pick(values)
            picked = list(plan.pick(values))
            for i, process in plan.processed:
                picked[i] = process(picked[i])
            return picked
        if plan.positional:
            out: list[Any] = []
            for name, proc, expands in plan.steps:
                value = values[name]
                if expands:
                    out.extend(map(proc, value) if proc else value)
                else:
                    out.append(value if proc is None else proc(value))
            return out
        named: dict[str, Any] = {}
        for name, proc, expands in plan.steps:
            if name not in values:
                continue
            value = values[name]
            if expands:
                for i, v in enumerate(value):
                    named[f"{name}_{i}"] = proc(v) if proc else v
            else:
                named[name] = value if proc is None else proc(value)
        return named

    @staticmethod
    def _rows(plan: _Plan, fetched: Iterable[tuple[Any, ...]]) -> list[Any]:
        make = plan.row
        if make is None:
            return []
        if not plan.any_results:
            return [make._make(r) for r in fetched]
        procs = plan.results or ()
        return [
            make._make([p(v) if p is not None else v for p, v in zip(procs, r, strict=True)])
            for r in fetched
        ]


def _fast_json(proc: Processor) -> Processor:
    """A bind processor that writes an empty dict or list without calling it, where it would
    write them as `{}` and `[]` (SQLite's JSON columns): most jobs have no selector, no needs
    and no resources, and each call is a trip through the json module."""
    try:
        plain = proc({}) == "{}" and proc([]) == "[]"
    except Exception:  # not a JSON processor
        plain = False
    if not plain:
        return proc

    def process(value: Any) -> Any:
        if not value:
            kind = type(value)
            if kind is dict:
                return "{}"
            if kind is list:
                return "[]"
        return proc(value)

    return process
