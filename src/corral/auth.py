"""Who is asking, and what they may do: scopes of tokens, checked on every route."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corral.domain.models import Token
from corral.errors import Forbidden, NotFound, Unauthorized


@dataclass(frozen=True)
class Principal:
    """The holder of a live token."""

    token_id: int
    kind: str  # admin | submitter | reader | join | worker
    name: str
    project: str | None = None
    project_id: int | None = None
    worker_id: int | None = None

    @classmethod
    def of(cls, token: Token, project_id: int | None) -> Principal:
        return cls(token.id, token.kind, token.name, token.project, project_id, token.worker_id)

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    def visible_projects(self) -> Sequence[int] | None:
        """Project ids this principal may see; None means every project (admin)."""
        if self.is_admin:
            return None
        if self.kind in ("submitter", "reader") and self.project_id is not None:
            return [self.project_id]
        return []

    def require_read(self, project_id: int) -> None:
        ids = self.visible_projects()
        if ids is not None and project_id not in ids:
            # the same answer as for a run that does not exist: nothing leaks across projects
            raise NotFound("not found")

    def require_submit(self, project_id: int) -> None:
        self.require_read(project_id)
        if self.kind not in ("admin", "submitter"):
            raise Forbidden(f"a {self.kind} token cannot submit, cancel or rerun")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden(f"this needs an admin token, not a {self.kind} token")

    def require_worker(self) -> int:
        if self.kind != "worker" or self.worker_id is None:
            raise Forbidden(f"this needs a worker credential, not a {self.kind} token")
        return self.worker_id

    def require_join(self) -> None:
        if self.kind not in ("join", "admin"):
            raise Forbidden(f"joining needs a join token, not a {self.kind} token")


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>'")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    return secret.strip()
