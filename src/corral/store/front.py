"""The front of the queue, read once for several workers leasing together.

A fleet's sites lease in one transaction (`Leases.lease_many`). Asked one worker at a time,
the store scans the queue from its start for each: the k-th site passes over the jobs picked
for the sites before it, each with its label check, so a round for N sites costs about N²
checks (measured: 1.3 ms of CPU for 20 sites, 44 ms for 200). Here the front of the queue is
read once, with each job's label pairs, and each worker takes its jobs from it by the rules of
the store's own pick: queued and due (the read), of a kind it allows, for it or for anyone,
every label pair of the job among its own, in id order, none taken twice. Indexes by target
worker and by label pair keep a worker from looking at jobs it could never take.

A worker still short when the read was cut at its limit asks the store for the rest, so a
queue deeper than the read leases exactly as it would one worker at a time.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Text, and_, bindparam, cast, select
from sqlalchemy.sql import ColumnElement

from corral.domain.labels import pairs
from corral.store.engine import Database
from corral.store.prepared import Prepared
from corral.store.tables import QUEUED, job_selectors, jobs, runs

# The most jobs one read takes in: past it, a short worker asks the store itself.
MAX_FRONT = 1000


def lease_columns(source: Any) -> list[Any]:
    """The columns of a job picked to lease, as `Leases` records it: `source` is the jobs
    table or a subquery of it, joined with its run."""
    return [
        source.c.id,
        source.c.run_id,
        source.c.name,
        source.c.instance,
        source.c.payload,
        source.c.timeout,
        source.c.attempts,
        runs.c.name.label("run_name"),
        runs.c.state.label("run_state"),
        runs.c.shared.label("run_shared"),
    ]


def front_query(db: Database, now: ColumnElement[Any]) -> Prepared:
    """The queued, due jobs of some kinds, oldest first, up to `n`, one row per label pair
    (or one with none). The payload comes as text, decoded only for the jobs taken."""
    head = (
        select(
            jobs.c.id,
            jobs.c.run_id,
            jobs.c.name,
            jobs.c.instance,
            cast(jobs.c.payload, Text).label("payload"),
            jobs.c.timeout,
            jobs.c.attempts,
            jobs.c.kind,
            jobs.c.target_worker_id,
            jobs.c.selector_size,
        )
        .where(
            jobs.c.state == QUEUED,
            jobs.c.not_before <= now,
            jobs.c.kind.in_(bindparam("kinds", expanding=True)),
        )
        .order_by(jobs.c.id)
        .limit(bindparam("n"))
    )
    if db.is_postgres:
        # as the one-worker pick: rows another coordinator is leasing are passed over. A job
        # read here that none of the batch takes stays locked until the transaction ends
        # (milliseconds), and other coordinators pass over it meanwhile
        head = head.with_for_update(skip_locked=True)
    c = head.subquery("c")
    return Prepared(
        select(*lease_columns(c), c.c.kind, c.c.target_worker_id, job_selectors.c.pair)
        .select_from(
            c.join(runs, runs.c.id == c.c.run_id).outerjoin(
                job_selectors, and_(job_selectors.c.job_id == c.c.id, c.c.selector_size > 0)
            )
        )
        .order_by(c.c.id)
    )


@dataclass
class Front:
    """The jobs read, in id order, and what each worker of the batch may take from them."""

    rows: list[Any]
    selectors: list[frozenset[str]]
    full: bool  # the read stopped at its limit: the queue may hold more behind it
    _by_target: dict[int, list[int]] = field(default_factory=dict)  # positions, per worker
    _anyone: list[int] = field(default_factory=list)  # for anyone, no label pair
    _by_pair: dict[str, list[int]] = field(default_factory=dict)  # for anyone, per pair
    # where each index list's untaken part begins: taken jobs are passed once, not per worker
    _starts: dict[Any, int] = field(default_factory=dict)

    @classmethod
    def read(cls, conn: Connection, query: Prepared, kinds: Sequence[str], n: int) -> Front:
        found = query.all(conn, {"kinds": list(kinds), "n": n})
        rows: list[Any] = []
        selectors: list[set[str]] = []
        for r in found:
            if not rows or rows[-1].id != r.id:
                rows.append(r)
                selectors.append(set())
            if r.pair is not None:
                selectors[-1].add(r.pair)
        front = cls(rows, [frozenset(s) for s in selectors], full=len(rows) >= n)
        for pos, (row, selector) in enumerate(zip(rows, front.selectors, strict=True)):
            if row.target_worker_id is not None:
                front._by_target.setdefault(row.target_worker_id, []).append(pos)
            elif not selector:
                front._anyone.append(pos)
            else:
                for pair in selector:
                    front._by_pair.setdefault(pair, []).append(pos)
        return front

    def take(self, worker: Any, n: int, taken: set[int]) -> list[Any]:
        """Up to `n` jobs for this worker (its row), as the store's pick would choose them;
        `taken` holds the jobs already picked in the batch, and gains these."""
        have = set(pairs(worker.labels))
        allow = set(worker.allow)
        lists: list[tuple[Any, list[int]]] = [
            (("target", worker.id), self._by_target.get(worker.id, [])),
            ("anyone", self._anyone),
        ]
        lists += [(("pair", p), self._by_pair[p]) for p in have if p in self._by_pair]
        out: list[Any] = []
        last = -1
        for pos in heapq.merge(*(self._untaken(key, ls, taken) for key, ls in lists)):
            if pos == last:
                continue  # under two of its pairs
            last = pos
            row = self.rows[pos]
            if row.id in taken or row.kind not in allow or not self.selectors[pos] <= have:
                continue
            out.append(row._replace(payload=json.loads(row.payload)))
            taken.add(row.id)
            if len(out) == n:
                break
        return out

    def _untaken(self, key: Any, positions: list[int], taken: set[int]) -> Iterator[int]:
        start = self._starts.get(key, 0)
        while start < len(positions) and self.rows[positions[start]].id in taken:
            start += 1
        self._starts[key] = start
        return (positions[i] for i in range(start, len(positions)))
