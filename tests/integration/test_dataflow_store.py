"""Dataflow in the store, on SQLite and PostgreSQL: outputs kept with the end, resolved at lease."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from integration_helpers import report, spec

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Lease, Report
from corral.errors import InvalidRunSpec, LeaseLost, NotFound
from corral.objects.backend import open_backend
from corral.store import Store
from corral.worker.link import LocalLink


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    return open_store(retry_backoff=0.0)  # a retry is leasable at once


@pytest.fixture
def coord(store: Store, tmp_path: Path) -> Coordinator:
    return Coordinator(store, objects=open_backend(str(tmp_path / "objects"), tmp_path))


@pytest.fixture
def admin(coord: Coordinator) -> Principal:
    _, secret = coord.store.tokens.create("admin", "test-admin")
    return coord.authenticate(secret)


@pytest.fixture
def link(coord: Coordinator) -> LocalLink:
    return LocalLink(coord, "w1", {}, 4, ["command"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def produce(link: LocalLink, lease: Lease, outputs: dict[str, bytes]) -> list[tuple[str, str, int]]:
    """Upload outputs as a worker does before it reports the end."""
    out = []
    for name, data in outputs.items():
        link.put_object(lease.attempt_id, sha(data), len(data), io.BytesIO(data))
        out.append((name, sha(data), len(data)))
    return out


def end(
    coord: Coordinator, link: LocalLink, lease: Lease, outputs: dict[str, bytes], outcome: str
) -> None:
    kept = produce(link, lease, outputs)
    code = 0 if outcome == "passed" else 1
    rep = Report(lease.attempt_id, lease.token, outcome, code, f"exit {code}", outputs=kept)
    coord.finish(link.worker_id, [rep])


def lease_one(coord: Coordinator, link: LocalLink, name: str) -> Lease:
    leases = coord.lease(link.worker_id, 10)
    assert [x.job_name for x in leases] == [name]
    return leases[0]


CHAIN: dict[str, dict[str, Any]] = {
    "count": {"command": "wc -l", "stdout": "object", "outputs": ["out/*.txt"], "retries": 1},
    "sum": {
        "command": "cat inputs/*",
        "inputs": {"n": "count:stdout", "a.txt": "count:out/a.txt"},
    },
}


def test_outputs_are_kept_with_the_end_and_feed_the_next_job(
    coord: Coordinator, admin: Principal, link: LocalLink
) -> None:
    run = coord.submit(admin, spec(CHAIN))
    first = lease_one(coord, link, "count")
    # a failed attempt's outputs are kept (for debugging) but feed nothing
    end(coord, link, first, {"stdout": b"1\n", "out/a.txt": b"failed a\n"}, "failed")
    second = lease_one(coord, link, "count")
    end(coord, link, second, {"stdout": b"2\n", "out/a.txt": b"passed a\n"}, "passed")
    consumer = lease_one(coord, link, "sum")
    placed = {i["name"]: i["sha256"] for i in consumer.payload["input_objects"]}
    assert placed == {"n": sha(b"2\n"), "a.txt": sha(b"passed a\n")}
    outputs = coord.outputs(admin, str(run.id), "count")
    assert [(o.attempt, o.name, o.size) for o in outputs] == [
        (1, "out/a.txt", 9),
        (1, "stdout", 2),
        (2, "out/a.txt", 9),
        (2, "stdout", 2),
    ]
    # the run's project may read what its jobs produced
    assert coord.find_object(admin, sha(b"passed a\n")).size == 9
    assert coord.store.objects.grants(sha(b"failed a\n")) == [coord.default_project.id]


def test_an_output_the_producer_did_not_produce_fails_the_consumer_naming_it(
    coord: Coordinator, admin: Principal, link: LocalLink
) -> None:
    coord.submit(admin, spec(CHAIN))
    producer = lease_one(coord, link, "count")
    end(coord, link, producer, {"stdout": b"0\n"}, "passed")  # the glob matched nothing
    consumer = lease_one(coord, link, "sum")
    assert "input_objects" not in consumer.payload
    assert consumer.payload["input_problem"] == (
        "input 'a.txt': job 'count' produced no 'out/a.txt' (nothing matched, or it has not passed)"
    )


def test_the_same_bytes_are_stored_once_however_often_produced(
    coord: Coordinator, admin: Principal, link: LocalLink, tmp_path: Path
) -> None:
    jobs = {f"j{i}": {"command": "x", "outputs": ["r.txt"], "stdout": "object"} for i in range(3)}
    coord.submit(admin, spec(jobs))
    for lease in coord.lease(link.worker_id, 10):
        end(coord, link, lease, {"r.txt": b"same\n", "stdout": b"same\n"}, "passed")
    objects, grants = coord.store.objects.count()
    assert (objects, grants) == (1, 1)
    blobs = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
    assert [p.name for p in blobs] == [sha(b"same\n")]


def test_an_object_input_needs_a_grant_to_the_runs_project(
    coord: Coordinator, admin: Principal, link: LocalLink
) -> None:
    ops = coord.store.projects.create("ops", command=True, task=True, code=False)
    coord.store.objects.record(sha(b"ops data"), 8, ops.id)  # as an upload to ops would
    coord.store.objects.record(sha(b"web data"), 8, coord.default_project.id)
    before = coord.runs(admin)
    with pytest.raises(InvalidRunSpec) as info:
        coord.submit(
            admin,
            spec(
                {
                    "a": {
                        "command": "cat inputs/d",
                        "inputs": {"d": f"sha256:{sha(b'ops data')}", "e": f"sha256:{sha(b'x')}"},
                    }
                }
            ),
        )
    assert info.value.problems == [
        ("jobs.a.inputs.d", f"no object sha256:{sha(b'ops data')}"),
        ("jobs.a.inputs.e", f"no object sha256:{sha(b'x')}"),
    ]
    assert coord.runs(admin) == before
    # an object the project holds is placed as named
    coord.submit(
        admin, spec({"a": {"command": "x", "inputs": {"d": f"sha256:{sha(b'web data')}"}}})
    )
    lease = lease_one(coord, link, "a")
    assert lease.payload["input_objects"] == [{"name": "d", "sha256": sha(b"web data")}]


def test_a_worker_reads_only_inputs_of_attempts_it_holds(
    coord: Coordinator, admin: Principal, link: LocalLink
) -> None:
    coord.store.objects.record(sha(b"input"), 5, coord.default_project.id)
    coord.store.objects.record(sha(b"other"), 5, coord.default_project.id)
    coord.submit(admin, spec({"a": {"command": "x", "inputs": {"d": f"sha256:{sha(b'input')}"}}}))
    me = link._me()
    with pytest.raises(NotFound):
        coord.find_object(me, sha(b"input"))  # not yet leased
    lease = lease_one(coord, link, "a")
    assert coord.find_object(me, sha(b"input")).size == 5
    with pytest.raises(NotFound):
        coord.find_object(me, sha(b"other"))
    coord.finish(link.worker_id, [report(lease)])
    with pytest.raises(NotFound):
        coord.find_object(me, sha(b"input"))  # the attempt ended


def test_outputs_go_only_to_attempts_the_worker_holds(
    coord: Coordinator, admin: Principal, link: LocalLink
) -> None:
    other = LocalLink(coord, "w2", {}, 4, ["command"])
    coord.submit(admin, spec({"a": {"command": "x", "outputs": ["o"]}}))
    lease = lease_one(coord, link, "a")
    with pytest.raises(LeaseLost):
        other.put_object(lease.attempt_id, sha(b"o"), 1, io.BytesIO(b"o"))
    assert coord.store.objects.count() == (0, 0)


def test_an_end_cannot_claim_an_object_its_project_does_not_hold(
    coord: Coordinator, admin: Principal, link: LocalLink
) -> None:
    ops = coord.store.projects.create("ops", command=True, task=True, code=False)
    secret = coord.store.objects.record(sha(b"ops secret"), 10, ops.id)
    run = coord.submit(admin, spec({"a": {"command": "x", "outputs": ["o"]}}))
    lease = lease_one(coord, link, "a")
    rep = Report(lease.attempt_id, lease.token, "passed", 0, "", outputs=[("o", secret.sha256, 10)])
    coord.finish(link.worker_id, [rep])
    assert coord.outputs(admin, str(run.id), "a") == []
    assert coord.store.objects.grants(secret.sha256) == [ops.id]
