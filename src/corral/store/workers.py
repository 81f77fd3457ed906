"""Workers in the store: join, list with their busy slots, drain, last seen."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import func, insert, select, update

from corral.domain.models import Worker
from corral.errors import Conflict, NotFound
from corral.store import rows
from corral.store.engine import Database
from corral.store.tables import ACTIVE_STATES, attempts, workers

ACTIVE = ("leased", "running")


class Workers:
    def __init__(self, db: Database) -> None:
        self.db = db

    def join(
        self,
        name: str,
        labels: Mapping[str, str],
        slots: int,
        allow: Sequence[str],
        local: bool = False,
        incarnation: str = "",
        inside_seen_within: float | None = None,
    ) -> tuple[Worker, str]:
        """Register a worker, or update the one of that name (a restarted worker keeps its id);
        and the incarnation that joined before this one ("" for none, or one that did not say).
        `inside_seen_within`: Conflict, changing nothing, when the name is a worker's inside a
        server (`local`) seen within that many seconds."""
        with self.db.write() as conn:
            now = self.db.now(conn)
            values = {
                "labels": dict(labels),
                "slots": slots,
                "allow": list(allow),
                "draining": False,
                "local": local,
                "last_seen": now,
                "incarnation": incarnation,
            }
            found = conn.execute(
                select(
                    workers.c.id, workers.c.incarnation, workers.c.local, workers.c.last_seen
                ).where(workers.c.name == name)
            ).one_or_none()
            if (
                found is not None
                and inside_seen_within is not None
                and found.local
                and now - found.last_seen <= inside_seen_within
            ):
                raise Conflict(
                    f"the name {name} is taken by a worker inside corral serve (its local "
                    "worker or a fleet site): give this worker another name"
                )
            if found is None:
                conn.execute(insert(workers).values(name=name, joined_at=now, **values))
            else:
                conn.execute(update(workers).where(workers.c.id == found.id).values(**values))
            row = conn.execute(select(workers).where(workers.c.name == name)).one()
            return rows.worker(row), "" if found is None else str(found.incarnation)

    def get(self, worker_id: int) -> Worker:
        with self.db.read() as conn:
            row = conn.execute(select(workers).where(workers.c.id == worker_id)).one_or_none()
            if row is None:
                raise NotFound(f"no worker {worker_id}")
            return rows.worker(row, self._busy(conn).get(worker_id, 0))

    def by_name(self, name: str) -> Worker:
        with self.db.read() as conn:
            row = conn.execute(select(workers).where(workers.c.name == name)).one_or_none()
            if row is None:
                raise NotFound(f"no worker {name!r}")
            return rows.worker(row, self._busy(conn).get(row.id, 0))

    def list(self) -> list[Worker]:
        with self.db.read() as conn:
            busy = self._busy(conn)
            found = conn.execute(select(workers).order_by(workers.c.name)).all()
            return [rows.worker(r, busy.get(r.id, 0)) for r in found]

    def _busy(self, conn: object) -> dict[int, int]:
        from sqlalchemy import Connection

        assert isinstance(conn, Connection)
        return dict(
            conn.execute(
                select(attempts.c.worker_id, func.count())
                .where(attempts.c.state.in_(ACTIVE_STATES))
                .group_by(attempts.c.worker_id)
            ).all()
        )

    def set_draining(self, worker_id: int, draining: bool) -> None:
        with self.db.write() as conn:
            done = conn.execute(
                update(workers).where(workers.c.id == worker_id).values(draining=draining)
            )
            if done.rowcount != 1:
                raise NotFound(f"no worker {worker_id}")

    def touch(self, *worker_ids: int) -> None:
        if not worker_ids:
            return
        with self.db.write(durable=False) as conn:
            conn.execute(
                update(workers)
                .where(workers.c.id.in_(worker_ids))
                .values(last_seen=self.db.now_sql())
            )
