"""Projects: namespaces with their own tokens and a policy of which job kinds they may run."""

from __future__ import annotations

from sqlalchemy import insert, select

from corral.domain.models import Project
from corral.errors import Conflict, NotFound
from corral.store.engine import Database
from corral.store.tables import projects


class Projects:
    def __init__(self, db: Database) -> None:
        self.db = db

    def ensure_default(self) -> Project:
        """`default` exists from the start and allows every kind of job (and a network for
        sandboxed code that asks for one): the laptop case, one user, no setup."""
        try:
            return self.get("default")
        except NotFound:
            try:
                return self.create("default", command=True, task=True, code=True, network=True)
            except Conflict:  # another coordinator made it first
                return self.get("default")

    def create(
        self, name: str, *, command: bool, task: bool, code: bool, network: bool = False
    ) -> Project:
        with self.db.write() as conn:
            if conn.execute(select(projects.c.id).where(projects.c.name == name)).first():
                raise Conflict(f"project {name!r} exists already")
            conn.execute(
                insert(projects).values(
                    name=name,
                    allow_command=command,
                    allow_task=task,
                    allow_code=code,
                    allow_network=network,
                    created_at=self.db.now(conn),
                )
            )
        return self.get(name)

    def get(self, name: str) -> Project:
        with self.db.read() as conn:
            row = conn.execute(select(projects).where(projects.c.name == name)).one_or_none()
        if row is None:
            raise NotFound(f"no project {name!r}")
        return _project(row)

    def by_id(self, project_id: int) -> Project:
        with self.db.read() as conn:
            row = conn.execute(select(projects).where(projects.c.id == project_id)).one_or_none()
        if row is None:
            raise NotFound(f"no project {project_id}")
        return _project(row)

    def list(self) -> list[Project]:
        with self.db.read() as conn:
            return [_project(r) for r in conn.execute(select(projects).order_by(projects.c.name))]


def _project(row: object) -> Project:
    return Project(
        id=row.id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        allow_command=bool(row.allow_command),  # type: ignore[attr-defined]
        allow_task=bool(row.allow_task),  # type: ignore[attr-defined]
        allow_code=bool(row.allow_code),  # type: ignore[attr-defined]
        allow_network=bool(row.allow_network),  # type: ignore[attr-defined]
    )
