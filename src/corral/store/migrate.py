"""Apply Alembic migrations on start, once even when several coordinators start together."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from corral.store.engine import Database

MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic keeps the running migration's context in module globals (`alembic.context`): two
# threads of one process must not migrate at once. Other processes wait on the database.
_ONE_AT_A_TIME = threading.Lock()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(db: Database) -> None:
    cfg = alembic_config()
    with _ONE_AT_A_TIME, db.write() as conn:
        if db.is_postgres:
            # serialize concurrent starts: the lock is released when the transaction ends
            conn.execute(text("SELECT pg_advisory_xact_lock(7352417)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
