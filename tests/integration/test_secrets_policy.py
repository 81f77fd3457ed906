"""Secrets and the code policy in the coordinator, on both stores: values go with leases only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integration_helpers import join, spec
from sqlalchemy import text

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.errors import ConfigError, Forbidden, InvalidRunSpec
from corral.secrets import Secrets, load_secrets
from corral.store import Store

VALUE = "v4lue-that-must-not-be-stored"


@pytest.fixture
def with_secrets(store: Store) -> Coordinator:
    return Coordinator(store, secrets=Secrets({"API_KEY": VALUE, "OTHER": "x"}))


@pytest.fixture
def root(with_secrets: Coordinator) -> Principal:
    _, secret = with_secrets.store.tokens.create("admin", "test-admin")
    return with_secrets.authenticate(secret)


def test_secret_values_travel_with_the_lease_and_are_never_stored(
    with_secrets: Coordinator, root: Principal, store: Store
) -> None:
    coord = with_secrets
    run = coord.submit(
        root, spec({"a": {"command": "env", "secrets": ["API_KEY"]}, "b": {"command": "x"}})
    )
    worker = join(coord, root, "w1")
    leases = {x.job_name: x for x in coord.lease(worker.id, 10)}
    assert leases["a"].payload["secret_values"] == {"API_KEY": VALUE}
    assert "secret_values" not in leases["b"].payload
    dump = []
    with store.db.engine.connect() as conn:
        for table in ("jobs", "attempts", "runs"):
            dump += [repr(tuple(r)) for r in conn.execute(text(f"SELECT * FROM {table}"))]
    assert dump and not any(VALUE in row for row in dump)
    _, view = coord.job(root, str(run.id), "a")
    assert VALUE not in json.dumps(dict(view.job.payload))


def test_an_unknown_secret_is_refused_naming_it(with_secrets: Coordinator, root: Principal) -> None:
    with pytest.raises(InvalidRunSpec) as info:
        with_secrets.submit(root, spec({"a": {"command": "x", "secrets": ["API_KEY", "NOPE"]}}))
    assert info.value.problems == [("jobs.a.secrets", "unknown secret 'NOPE'")]
    assert with_secrets.runs(root) == []


def test_code_jobs_follow_the_project_policy(coord: Coordinator, admin: Principal) -> None:
    run = coord.submit(admin, spec({"a": {"code": "print(1)", "network": True}}))
    assert run.project == "default"  # allows code and a network
    coord.store.projects.create("strict", command=True, task=True, code=False)
    coord.store.projects.create("offline", command=True, task=True, code=True, network=False)
    with pytest.raises(Forbidden, match="does not allow code jobs"):
        coord.submit(admin, spec({"a": {"code": "print(1)"}}), project="strict")
    with pytest.raises(Forbidden, match="does not allow code jobs a network"):
        coord.submit(admin, spec({"a": {"code": "print(1)", "network": True}}), project="offline")
    assert coord.submit(admin, spec({"a": {"code": "print(1)"}}), project="offline").id


def test_only_workers_that_allow_code_lease_it(coord: Coordinator, admin: Principal) -> None:
    coord.submit(admin, spec({"a": {"code": "print(1)"}}))
    plain = join(coord, admin, "plain")
    assert coord.lease(plain.id, 5) == []
    boxer = join(coord, admin, "boxer", allow=("command", "code"))
    assert [x.payload["kind"] for x in coord.lease(boxer.id, 5)] == ["code"]


def test_secrets_load_from_the_settings_file_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text('[secrets]\nA = "from-file"\nB = "file"\n')
    found = load_secrets(tmp_path, env={"CORRAL_SECRET_B": "from-env", "CORRAL_SECRET_C": "c"})
    assert found.resolve(["A", "B", "C", "D"]) == {"A": "from-file", "B": "from-env", "C": "c"}
    assert "from-file" not in repr(found)
    (tmp_path / "corral.toml").write_text('[secrets]\n"bad-name" = "x"\nE = 987654321\n')
    with pytest.raises(ConfigError) as info:
        load_secrets(tmp_path, env={})
    assert len(info.value.problems) == 2 and "987654321" not in str(info.value)
