"""The store on both engines: submit, lease, finish, durability, migrations."""

from __future__ import annotations

import threading
from collections.abc import Callable

from integration_helpers import join, report, spec, states
from sqlalchemy import inspect, select

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Report
from corral.domain.states import JobState, RunState
from corral.store import Store
from corral.store.tables import metadata, runs


def test_submit_lease_finish_passes_the_run(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec({"a": {"command": "true"}, "b": {"command": "true"}}))
    assert run.state is RunState.QUEUED
    assert run.counts == {"queued": 2}
    assert run.started_at is None

    leases = coord.lease(w.id, 10)
    assert sorted(x.job_name for x in leases) == ["a", "b"]
    assert {x.run_id for x in leases} == {run.id}
    assert all(x.number == 1 and x.run_name == "r" and x.ttl == 30.0 for x in leases)
    assert leases[0].payload == {"kind": "command", "command": "true"}
    assert len({x.token for x in leases}) == 2
    assert coord.store.runs.get(run.id).state is RunState.RUNNING
    assert states(coord, run.id) == {"a": "leased", "b": "leased"}
    assert coord.lease(w.id, 10) == []  # nothing left

    lost = coord.start(w.id, [(leases[0].attempt_id, leases[0].token, 123.0)])
    assert lost == []
    assert states(coord, run.id)["a" if leases[0].job_name == "a" else "b"] == "running"

    results = coord.finish(w.id, [report(x) for x in leases])
    assert [r.state for r in results] == [JobState.PASSED, JobState.PASSED]  # type: ignore[union-attr]
    done = coord.store.runs.get(run.id)
    assert done.state is RunState.PASSED
    assert done.counts == {"passed": 2}
    assert done.ended_at is not None and done.started_at is not None
    assert done.ended_at >= done.started_at >= done.created_at

    for job in coord.store.runs.jobs(run.id):
        (attempt,) = coord.store.runs.attempts(job.id)
        assert (attempt.number, attempt.worker, attempt.state, attempt.exit_code) == (
            1,
            "w1",
            "passed",
            0,
        )
        assert (job.attempts, job.worker, job.exit_code) == (1, "w1", 0)
        assert job.started_at is not None and job.ended_at is not None


def test_an_accepted_submit_is_durable(
    coord: Coordinator, admin: Principal, open_store: Callable[..., Store]
) -> None:
    run = coord.submit(
        admin, spec({"a": {"command": "true"}, "b": {"command": "x", "needs": ["a"]}})
    )
    # another store (another process, after a crash) sees the run at once
    other = open_store()
    seen = other.runs.get(run.id)
    assert (seen.name, seen.state, seen.counts) == (
        "r",
        RunState.QUEUED,
        {"queued": 1, "blocked": 1},
    )
    assert [j.name for j in other.runs.jobs(run.id)] == ["a", "b"]

    w = join(coord, admin, "w1")
    (lease,) = coord.lease(w.id, 10)
    coord.finish(w.id, [report(lease)])
    (lease,) = coord.lease(w.id, 10)
    coord.finish(w.id, [report(lease)])
    coord.store.close()

    again = open_store()
    assert again.runs.get(run.id).state is RunState.PASSED
    assert {j.name: j.state for j in again.runs.jobs(run.id)} == {
        "a": JobState.PASSED,
        "b": JobState.PASSED,
    }


def test_opening_a_store_twice_does_not_migrate_twice(
    store: Store, open_store: Callable[..., Store]
) -> None:
    store.projects.create("p1", command=True, task=True, code=False)
    other = open_store()
    assert [p.name for p in other.projects.list()] == ["p1"]


def test_migrations_create_every_table_and_concurrent_starts_agree(
    empty_db_url: str, open_store: Callable[..., Store]
) -> None:
    errors: list[BaseException] = []
    stores: list[Store] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            s = open_store(empty_db_url)
            with lock:
                stores.append(s)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stores) == 4
    names = set(inspect(stores[0].db.engine).get_table_names())
    assert set(metadata.tables) <= names
    assert "alembic_version" in names
    stores[0].projects.ensure_default()
    assert [p.name for p in stores[3].projects.list()] == ["default"]


def test_run_rows_keep_params_and_submitter(coord: Coordinator, admin: Principal) -> None:
    run = coord.submit(admin, spec({"a": {"command": "x"}}, name="rev1234", params={"sha": "abc"}))
    assert (run.name, run.params, run.submitted_by, run.project) == (
        "rev1234",
        {"sha": "abc"},
        "test-admin",
        "default",
    )
    with coord.store.db.read() as conn:
        assert conn.execute(select(runs.c.pending).where(runs.c.id == run.id)).scalar_one() == 1
    assert coord.run(admin, "rev1234").id == run.id
    assert coord.run(admin, str(run.id)).id == run.id


def test_migrations_match_the_tables_module(store: Store) -> None:
    """A column added to tables.py without a migration (or the reverse) shows up here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_runs_stored_before_migration_0005_keep_their_published_values(
    coord: Coordinator, admin: Principal
) -> None:
    from alembic import command

    from corral.store.migrate import alembic_config
    from corral.store.shared import shared_result

    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec({"a": {"command": "x"}, "b": {"command": "y"}}))
    other = coord.submit(admin, spec({"c": {"command": "z"}}))
    leases = {x.job_name: x for x in coord.lease(w.id, 3)}
    a, b, c = leases["a"], leases["b"], leases["c"]
    coord.finish(
        w.id, [Report(a.attempt_id, a.token, "passed", 0, "", result=shared_result({"K": "v"}))]
    )
    coord.finish(w.id, [Report(b.attempt_id, b.token, "passed", 0, "")])
    coord.finish(w.id, [Report(c.attempt_id, c.token, "passed", 0, "")])
    cfg = alembic_config()
    db = coord.store.db
    db.dispose()  # no pooled connection holds the tables
    with db.engine.connect() as conn:
        if db.is_sqlite:
            # SQLite's batch mode copies the table: runs' references would refuse the drop
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
            command.upgrade(cfg, "head")
    with db.read() as conn:
        flags = dict(conn.execute(select(runs.c.id, runs.c.shared)).all())
    assert flags == {run.id: True, other.id: False}
