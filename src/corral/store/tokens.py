"""Tokens: random secrets shown once, stored as sha256 hashes, each with one scope."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import insert, select, update

from corral.domain.models import Token
from corral.errors import NotFound
from corral.store.engine import Database
from corral.store.tables import projects, tokens

KINDS = ("admin", "submitter", "reader", "join", "worker")
PREFIX = "crl_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Tokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        kind: str,
        name: str,
        project_id: int | None = None,
        worker_id: int | None = None,
        secret: str | None = None,
    ) -> tuple[Token, str]:
        """A new token and its secret (the only time the secret exists outside its holder)."""
        if kind not in KINDS:
            raise ValueError(f"unknown token kind {kind!r}")
        secret = secret or PREFIX + secrets.token_urlsafe(32)
        with self.db.write() as conn:
            token_id = conn.execute(
                insert(tokens)
                .values(
                    secret_hash=digest(secret),
                    kind=kind,
                    project_id=project_id,
                    worker_id=worker_id,
                    name=name,
                    created_at=self.db.now(conn),
                )
                .returning(tokens.c.id)
            ).scalar_one()
        return self.get(int(token_id)), secret

    def lookup(self, secret: str) -> Token | None:
        """The live token with this secret, or None (unknown and revoked look the same)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(tokens, projects.c.name.label("project"))
                .outerjoin(projects, projects.c.id == tokens.c.project_id)
                .where(tokens.c.secret_hash == digest(secret), tokens.c.revoked_at.is_(None))
            ).one_or_none()
        return None if row is None else _token(row)

    def get(self, token_id: int) -> Token:
        with self.db.read() as conn:
            row = conn.execute(
                select(tokens, projects.c.name.label("project"))
                .outerjoin(projects, projects.c.id == tokens.c.project_id)
                .where(tokens.c.id == token_id)
            ).one_or_none()
        if row is None:
            raise NotFound(f"no token {token_id}")
        return _token(row)

    def list(self) -> list[Token]:
        with self.db.read() as conn:
            found = conn.execute(
                select(tokens, projects.c.name.label("project"))
                .outerjoin(projects, projects.c.id == tokens.c.project_id)
                .order_by(tokens.c.id)
            ).all()
        return [_token(r) for r in found]

    def revoke(self, token_id: int) -> None:
        with self.db.write() as conn:
            done = conn.execute(
                update(tokens)
                .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
                .values(revoked_at=self.db.now_sql())
            )
        if done.rowcount != 1:
            raise NotFound(f"no live token {token_id}")

    def revoke_worker(self, worker_id: int) -> None:
        """A rejoining worker's old credentials stop working."""
        with self.db.write() as conn:
            conn.execute(
                update(tokens)
                .where(tokens.c.worker_id == worker_id, tokens.c.revoked_at.is_(None))
                .values(revoked_at=self.db.now_sql())
            )


def _token(row: object) -> Token:
    r = row  # a Row with the token columns and `project`
    return Token(
        id=r.id,  # type: ignore[attr-defined]
        kind=r.kind,  # type: ignore[attr-defined]
        project=r.project,  # type: ignore[attr-defined]
        worker_id=r.worker_id,  # type: ignore[attr-defined]
        name=r.name,  # type: ignore[attr-defined]
        created_at=r.created_at,  # type: ignore[attr-defined]
        revoked=r.revoked_at is not None,  # type: ignore[attr-defined]
    )
