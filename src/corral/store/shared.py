"""Key/values a job publishes for later jobs of its run, kept with the attempt that made them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import and_, bindparam, select

from corral.store.engine import Database
from corral.store.prepared import Prepared
from corral.store.tables import attempts, jobs

MAX_VALUES = 256
_NOT_ENV = re.compile(r"[^A-Za-z0-9_]")


def shared_result(values: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """What an attempt's end carries as its result when its job published key/values: stored
    with the end, so only the lease holder can set them (the finish is fenced by its token)."""
    return {"shared": dict(list(values.items())[:MAX_VALUES])}


def publishes(result: object) -> bool:
    """Whether an attempt's result holds key/values for later jobs (see `shared_result`)."""
    return isinstance(result, dict) and bool(result.get("shared"))


class Shared:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._of_run = Prepared(
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

    def of_run(self, run_id: int) -> dict[str, dict[str, str]]:
        """Job label → its published values, for the run's passed jobs that published any."""
        with self.db.read() as conn:
            rows = self._of_run.all(conn, {"rid": run_id})
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
