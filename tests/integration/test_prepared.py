"""Prepared statements give the rows SQLAlchemy would, on both engines, types included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, update

from corral.store import Store
from corral.store.prepared import Prepared
from corral.store.tables import projects, workers

_NEW_WORKER = {
    "labels": {"platform": "linux", "gpu": "yes"},
    "slots": 3,
    "allow": ["command", "task"],
    "draining": True,
    "local": False,
    "last_seen": 12.5,
    "joined_at": 10.25,
}


def _add_worker(store: Store, name: str) -> int:
    with store.db.write() as conn:
        q = Prepared(
            insert(workers)
            .values(name=bindparam("name"), **{k: bindparam(k) for k in _NEW_WORKER})
            .returning(workers.c.id)
        )
        return int(q.scalar(conn, {"name": name, **_NEW_WORKER}))


def test_rows_match_sqlalchemy_with_json_booleans_and_floats(store: Store) -> None:
    wid = _add_worker(store, "w-json")
    stmt = select(workers).where(workers.c.id == bindparam("wid"))
    with store.db.read() as conn:
        expected = conn.execute(stmt, {"wid": wid}).one()
        got = Prepared(stmt).one(conn, {"wid": wid})
    assert tuple(got) == tuple(expected)
    assert got.labels == {"platform": "linux", "gpu": "yes"}
    assert got.allow == ["command", "task"]
    assert got.draining is True
    assert got.last_seen == 12.5


@pytest.mark.parametrize("ids", [[], [1], [1, 2, 3]])
def test_expanding_lists_of_any_length_even_empty(store: Store, ids: list[int]) -> None:
    for name in ("p2", "p3"):
        store.projects.create(name, command=True, task=False, code=False)
    inside = Prepared(
        select(projects.c.id).where(projects.c.id.in_(bindparam("ids", expanding=True)))
    )
    outside = Prepared(
        select(projects.c.id).where(projects.c.id.not_in(bindparam("ids", expanding=True)))
    )
    with store.db.read() as conn:
        every = sorted(r.id for r in conn.execute(select(projects.c.id)))
        assert sorted(r.id for r in inside.all(conn, {"ids": ids})) == [
            i for i in every if i in ids
        ]
        assert sorted(r.id for r in outside.all(conn, {"ids": ids})) == [
            i for i in every if i not in ids
        ]


def test_values_written_into_the_statement_and_rowcounts(store: Store) -> None:
    wid = _add_worker(store, "w-count")
    # `draining=False` and the literal in the WHERE are binds the caller never names
    stop = Prepared(
        update(workers)
        .where(workers.c.id == bindparam("wid"), workers.c.draining.is_(True))
        .values(draining=False, slots=bindparam("slots"))
    )
    with store.db.write() as conn:
        assert stop.execute(conn, {"wid": wid, "slots": 7}) == 1
        assert stop.execute(conn, {"wid": wid, "slots": 8}) == 0  # the guard misses now
    row = store.workers.get(wid)
    assert (row.draining, row.slots) == (False, 7)


def test_many_runs_each_set_of_params(store: Store) -> None:
    ids = [_add_worker(store, f"w-many-{i}") for i in range(3)]
    seen = Prepared(
        update(workers).where(workers.c.id == bindparam("wid")).values(slots=bindparam("n"))
    )
    with store.db.write() as conn:
        seen.many(conn, [{"wid": w, "n": 10 + i} for i, w in enumerate(ids)])
    assert [store.workers.get(w).slots for w in ids] == [10, 11, 12]


def test_one_insists_on_exactly_one_row(store: Store) -> None:
    q = Prepared(select(workers.c.id).where(workers.c.name == bindparam("name")))
    with store.db.read() as conn:
        with pytest.raises(LookupError, match="expected one row, got 0"):
            q.one(conn, {"name": "nobody"})
        assert q.first(conn, {"name": "nobody"}) is None
        assert q.scalar(conn, {"name": "nobody"}) is None


def test_a_non_durable_write_is_committed_and_seen(store: Store) -> None:
    wid = _add_worker(store, "w-fast")
    q = Prepared(update(workers).where(workers.c.id == bindparam("wid")).values(slots=9))
    with store.db.write(durable=False) as conn:
        q.execute(conn, {"wid": wid})
    assert store.workers.get(wid).slots == 9
    if store.db.is_sqlite:
        # the next transaction is durable again
        with store.db.write() as conn:
            raw: Any = conn.connection.driver_connection
            assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_empty_and_full_json_values_are_written_as_sqlalchemy_writes_them(store: Store) -> None:
    # empty dicts and lists take a short way round the json module where the engine keeps
    # JSON as text; what lands in the table must be the same either way
    values = [({}, []), ({"a": [1, {}]}, ["x", []]), ({"": None}, [{}])]
    ids = []
    with store.db.write() as conn:
        add = Prepared(
            insert(workers)
            .values(
                name=bindparam("name"),
                labels=bindparam("labels"),
                allow=bindparam("allow"),
                **{k: bindparam(k) for k in _NEW_WORKER if k not in ("labels", "allow")},
            )
            .returning(workers.c.id)
        )
        for i, (labels, allow) in enumerate(values):
            row = {**_NEW_WORKER, "name": f"w-empty-{i}", "labels": labels, "allow": allow}
            ids.append(int(add.scalar(conn, row)))
    with store.db.read() as conn:
        for wid, (labels, allow) in zip(ids, values, strict=True):
            got = conn.execute(
                select(workers.c.labels, workers.c.allow).where(workers.c.id == wid)
            ).one()
            assert (got.labels, got.allow) == (labels, allow)
            if store.db.is_sqlite:
                text = conn.exec_driver_sql(
                    f"SELECT labels, allow FROM workers WHERE id = {wid}"
                ).one()
                assert tuple(text) == (json.dumps(labels), json.dumps(allow))
