"""Object rows (hash and size) and the grants that let a project read them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from corral.store.engine import Database, insert_ignoring_duplicates
from corral.store.tables import object_grants, objects


@dataclass(frozen=True)
class ObjectRow:
    sha256: str
    size: int
    created_at: float


class Objects:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, sha256: str, size: int, project_id: int) -> ObjectRow:
        """The object (once, however often it comes) and its grant to the project; call it
        only when the blob is safely stored."""
        with self.db.write() as conn:
            now = self.db.now(conn)
            conn.execute(
                insert_ignoring_duplicates(self.db, objects).values(
                    sha256=sha256, size=size, created_at=now
                )
            )
            conn.execute(
                insert_ignoring_duplicates(self.db, object_grants).values(
                    sha256=sha256, project_id=project_id, created_at=now
                )
            )
            row = conn.execute(select(objects).where(objects.c.sha256 == sha256)).one()
        return _row(row)

    def get(self, sha256: str) -> ObjectRow | None:
        with self.db.read() as conn:
            row = conn.execute(select(objects).where(objects.c.sha256 == sha256)).one_or_none()
        return None if row is None else _row(row)

    def readable(self, sha256: str, project_ids: Sequence[int] | None) -> ObjectRow | None:
        """The object if one of these projects holds a grant (None = any project may)."""
        query = select(objects).where(objects.c.sha256 == sha256)
        if project_ids is not None:
            query = query.where(
                select(object_grants.c.sha256)
                .where(
                    object_grants.c.sha256 == sha256,
                    object_grants.c.project_id.in_(list(project_ids)),
                )
                .exists()
            )
        with self.db.read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _row(row)

    def grants(self, sha256: str) -> list[int]:
        """Ids of the projects that may read the object."""
        with self.db.read() as conn:
            found = conn.execute(
                select(object_grants.c.project_id)
                .where(object_grants.c.sha256 == sha256)
                .order_by(object_grants.c.project_id)
            ).scalars()
            return [int(p) for p in found]

    def count(self) -> tuple[int, int]:
        """How many objects and grants there are."""
        with self.db.read() as conn:
            n_objects = conn.execute(select(func.count()).select_from(objects)).scalar_one()
            n_grants = conn.execute(select(func.count()).select_from(object_grants)).scalar_one()
        return int(n_objects), int(n_grants)


def _row(row: object) -> ObjectRow:
    return ObjectRow(
        sha256=row.sha256,  # type: ignore[attr-defined]
        size=int(row.size),  # type: ignore[attr-defined]
        created_at=float(row.created_at),  # type: ignore[attr-defined]
    )
