"""The store: one small component per concept over one database (SQLite or PostgreSQL)."""

from __future__ import annotations

from corral.store.dataflow import Dataflow
from corral.store.engine import Database
from corral.store.leases import Leases
from corral.store.logs import Logs
from corral.store.migrate import upgrade
from corral.store.objects import Objects
from corral.store.pages import Pages
from corral.store.projects import Projects
from corral.store.runs import Runs
from corral.store.tokens import Tokens
from corral.store.workers import Workers


class Store:
    """The components, sharing one Database; migrations are applied when it opens."""

    def __init__(self, url: str, *, retry_backoff: float = 1.0, migrate: bool = True) -> None:
        self.db = Database(url)
        if migrate:
            upgrade(self.db)
        self.projects = Projects(self.db)
        self.runs = Runs(self.db)
        self.leases = Leases(self.db, retry_backoff=retry_backoff)
        self.logs = Logs(self.db)
        self.workers = Workers(self.db)
        self.tokens = Tokens(self.db)
        self.objects = Objects(self.db)
        self.pages = Pages(self.db)
        self.dataflow = Dataflow(self.db)

    def close(self) -> None:
        self.db.dispose()


__all__ = ["Database", "Store"]
