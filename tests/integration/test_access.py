"""Tokens and projects on both engines: hashed secrets, revocation, isolation between projects."""

from __future__ import annotations

import hashlib

import pytest
from integration_helpers import join, spec
from sqlalchemy import select

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.states import RunState
from corral.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from corral.store.tables import tokens


def all_token_rows(coord: Coordinator) -> list[tuple[object, ...]]:
    with coord.store.db.read() as conn:
        return [tuple(r) for r in conn.execute(select(tokens)).all()]


def test_secrets_are_stored_hashed(coord: Coordinator, admin: Principal) -> None:
    token, secret = coord.create_token(admin, "submitter", "team-a")
    assert secret.startswith("crl_") and len(secret) > 40
    rows = all_token_rows(coord)
    assert rows  # the admin token and this one
    assert not any(secret in repr(value) for row in rows for value in row)
    with coord.store.db.read() as conn:
        stored = conn.execute(
            select(tokens.c.secret_hash).where(tokens.c.id == token.id)
        ).scalar_one()
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert (token.kind, token.project, token.revoked) == ("submitter", "team-a", False)


def test_lookup_and_revoke(coord: Coordinator, admin: Principal) -> None:
    token, secret = coord.create_token(admin, "reader", "team-a", name="ro")
    found = coord.store.tokens.lookup(secret)
    assert found is not None and (found.id, found.name, found.kind) == (token.id, "ro", "reader")
    who = coord.authenticate(secret)
    assert (who.kind, who.project, who.token_id) == ("reader", "team-a", token.id)
    assert coord.store.tokens.lookup(secret + "x") is None
    assert coord.store.tokens.lookup("") is None

    coord.revoke_token(admin, token.id)
    assert coord.store.tokens.lookup(secret) is None
    with pytest.raises(Unauthorized):
        coord.authenticate(secret)
    assert coord.store.tokens.get(token.id).revoked is True
    with pytest.raises(NotFound):
        coord.revoke_token(admin, token.id)  # revoked already
    with pytest.raises(NotFound):
        coord.revoke_token(admin, 99999)


def test_only_admins_manage_tokens(coord: Coordinator, admin: Principal) -> None:
    _, secret = coord.create_token(admin, "submitter", "team-a")
    submitter = coord.authenticate(secret)
    with pytest.raises(Forbidden):
        coord.create_token(submitter, "admin")
    with pytest.raises(Forbidden):
        coord.list_tokens(submitter)
    with pytest.raises(Forbidden):
        coord.revoke_token(submitter, submitter.token_id)
    with pytest.raises(InvalidInput) as info:
        coord.create_token(admin, "reader")
    assert info.value.field == "project"
    with pytest.raises(InvalidInput) as info:
        coord.create_token(admin, "worker")
    assert info.value.field == "kind"


def test_a_rejoining_worker_revokes_its_old_credential(
    coord: Coordinator, admin: Principal
) -> None:
    w1, old = coord.join(admin, "w1", {"os": "linux"}, 2, ["command"])
    assert coord.authenticate(old).worker_id == w1.id
    w1b, new = coord.join(admin, "w1", {"os": "bsd"}, 2, ["command"])
    assert w1b.id == w1.id and w1b.labels == {"os": "bsd"}
    with pytest.raises(Unauthorized):
        coord.authenticate(old)
    assert coord.authenticate(new).worker_id == w1.id


@pytest.fixture
def two_projects(coord: Coordinator, admin: Principal) -> dict[str, Principal]:
    for name in ("alpha", "beta"):
        coord.store.projects.create(name, command=True, task=True, code=False)
    who = {}
    for project in ("alpha", "beta"):
        for kind in ("submitter", "reader"):
            _, secret = coord.create_token(admin, kind, project)
            who[f"{project}-{kind}"] = coord.authenticate(secret)
    return who


def test_a_token_of_one_project_sees_nothing_of_another(
    coord: Coordinator, admin: Principal, two_projects: dict[str, Principal]
) -> None:
    reader_a = two_projects["alpha-reader"]
    submit_a = two_projects["alpha-submitter"]
    submit_b = two_projects["beta-submitter"]
    run_b = coord.submit(submit_b, spec({"x": {"command": "true"}}, name="secret-b"))
    run_a = coord.submit(submit_a, spec({"x": {"command": "true"}}, name="mine"))
    assert (run_a.project, run_b.project) == ("alpha", "beta")

    for who in (reader_a, submit_a):
        for ref in (str(run_b.id), "secret-b"):
            with pytest.raises(NotFound):
                coord.run(who, ref)
            with pytest.raises(NotFound):
                coord.jobs(who, ref)
            with pytest.raises(NotFound):
                coord.job(who, ref, "x")
            with pytest.raises(NotFound):
                coord.cancel(who, ref)
            with pytest.raises(NotFound):
                coord.rerun(who, ref, failed_only=False)
        assert [r.id for r in coord.runs(who)] == [run_a.id]
        with pytest.raises(NotFound):
            coord.runs(who, project="beta")
    assert coord.store.runs.get(run_b.id).state is RunState.QUEUED  # untouched
    # a submitter cannot put a run into another project either
    with pytest.raises(NotFound):
        coord.submit(submit_a, spec({"x": {"command": "true"}}), project="beta")
    with pytest.raises(NotFound):
        coord.submit(submit_a, spec({"x": {"command": "true"}}, project="beta"))
    assert sorted(r.id for r in coord.runs(admin)) == sorted([run_a.id, run_b.id])


def test_a_reader_cannot_submit_cancel_or_rerun(
    coord: Coordinator, two_projects: dict[str, Principal]
) -> None:
    reader = two_projects["alpha-reader"]
    run = coord.submit(two_projects["alpha-submitter"], spec({"x": {"command": "true"}}))
    assert coord.run(reader, str(run.id)).id == run.id  # it may read
    before = coord.store.runs.list(None)
    with pytest.raises(Forbidden):
        coord.submit(reader, spec({"x": {"command": "true"}}))
    with pytest.raises(Forbidden):
        coord.cancel(reader, str(run.id))
    with pytest.raises(Forbidden):
        coord.rerun(reader, str(run.id), failed_only=False)
    assert coord.store.runs.list(None) == before


def test_worker_and_join_tokens_see_no_runs(coord: Coordinator, admin: Principal) -> None:
    run = coord.submit(admin, spec({"x": {"command": "true"}}))
    _, worker_secret = coord.join(admin, "w1", {}, 1, ["command"])
    _, join_secret = coord.create_token(admin, "join")
    for secret in (worker_secret, join_secret):
        who = coord.authenticate(secret)
        with pytest.raises(NotFound):
            coord.run(who, str(run.id))
        assert coord.runs(who) == []
        with pytest.raises((Forbidden, NotFound)):
            coord.submit(who, spec({"x": {"command": "true"}}))


def test_a_project_policy_limits_job_kinds(coord: Coordinator, admin: Principal) -> None:
    _, secret = coord.create_token(admin, "submitter", "tasks-only")  # a new project
    who = coord.authenticate(secret)
    with pytest.raises(Forbidden, match="does not allow command"):
        coord.submit(who, spec({"x": {"command": "true"}}))
    assert coord.store.runs.list(None) == []


def test_join_checks_its_input(coord: Coordinator, admin: Principal) -> None:
    cases = [
        (("bad name", {}, 1, ["command"]), "name"),
        (("w", {"1x": "y"}, 1, ["command"]), "labels"),
        (("w", {}, 0, ["command"]), "slots"),
        (("w", {}, True, ["command"]), "slots"),
        (("w", {}, 1, ["shell"]), "allow"),
        (("w", {}, 1, []), "allow"),
    ]
    for args, field in cases:
        with pytest.raises(InvalidInput) as info:
            coord.join(admin, *args)  # type: ignore[arg-type]
        assert info.value.field == field
    assert coord.store.workers.list() == []
    _, secret = coord.create_token(admin, "submitter", "team-a")
    with pytest.raises(Forbidden):
        join(coord, coord.authenticate(secret), "w")
