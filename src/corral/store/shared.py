"""Key/values a job publishes for later jobs of its run, kept with the attempt that made them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import and_, bindparam, select, update

from corral.store.engine import Database
from corral.store.tables import ACTIVE_STATES, attempts, jobs

MAX_VALUES = 256
_NOT_ENV = re.compile(r"[^A-Za-z0-9_]")


class Shared:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._publish = (
            update(attempts)
            .where(
                attempts.c.id == bindparam("aid"),
                attempts.c.lease_token == bindparam("token"),
                attempts.c.state.in_(ACTIVE_STATES),
            )
            .values(result=bindparam("result"))
        )
        self._of_run = (
            select(jobs.c.name, jobs.c.instance, attempts.c.result)
            .join(attempts, attempts.c.id == jobs.c.current_attempt_id)
            .where(
                and_(
                    jobs.c.run_id == bindparam("rid"),
                    jobs.c.state == "passed",
                    attempts.c.result.is_not(None),
                )
            )
            .order_by(jobs.c.id)
        )

    def publish(self, attempt_id: int, token: str, values: Mapping[str, str]) -> bool:
        """Keep what the attempt published; only its current holder may (fenced by the token)."""
        kept = dict(list(values.items())[:MAX_VALUES])
        with self.db.write() as conn:
            done = conn.execute(
                self._publish, {"aid": attempt_id, "token": token, "result": {"shared": kept}}
            )
            return done.rowcount == 1

    def of_run(self, run_id: int) -> dict[str, dict[str, str]]:
        """Job label → its published values, for the run's passed jobs that published any."""
        with self.db.read() as conn:
            rows = conn.execute(self._of_run, {"rid": run_id}).all()
        out: dict[str, dict[str, str]] = {}
        for name, instance, result in rows:
            values = result.get("shared") if isinstance(result, dict) else None
            if values:
                out[f"{name}[{instance}]" if instance else name] = dict(values)
        return out

    def env_for(self, run_id: int, instance: str) -> dict[str, str]:
        """`CORRAL_SHARED_<JOB>_<KEY>` for a job of the run on host `instance`: a job that ran
        on every host gives the values of its copy on this host; a job that ran once, its own."""
        env: dict[str, str] = {}
        for label, values in self.of_run(run_id).items():
            name, _, rest = label.partition("[")
            if rest and rest[:-1] != instance:
                continue
            prefix = "CORRAL_SHARED_" + _NOT_ENV.sub("_", name).upper() + "_"
            env.update({prefix + key: value for key, value in values.items()})
        return env
