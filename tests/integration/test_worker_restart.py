"""A worker started again (a new process of the same name) takes over from the old one at once:
the jobs the old process held are ended when the new one joins, not when their leases run out.
The same process joining again, or a worker that does not say which process it is, keeps them."""

from __future__ import annotations

import pytest
from integration_helpers import report, spec

from corral.auth import Principal
from corral.coordinator import Coordinator


def _jobs(coord: Coordinator, run_id: int) -> dict[str, tuple[str, str]]:
    return {j.label: (j.state.value, j.reason) for j in coord.store.runs.jobs(run_id)}


def test_a_worker_started_again_ends_the_jobs_of_its_old_process_at_once(
    coord: Coordinator, admin: Principal
) -> None:
    w, _ = coord.join(admin, "w1", {}, 2, ["command"], incarnation="first")
    run = coord.submit(
        admin, spec({"again": {"command": "true", "retries": 1}, "once": {"command": "true"}})
    )
    old = coord.lease(w.id, 2)
    assert len(old) == 2

    coord.join(admin, "w1", {}, 2, ["command"], incarnation="second")

    found = _jobs(coord, run.id)
    assert found["again"][0] == "queued"  # a retry left: it runs again at once
    assert found["once"][0] == "lost"
    assert found["once"][1] == "the worker w1 stopped before the job ended and has started again"
    # the old process's leases are over: an end from it changes nothing
    lost, _ = coord.report(w.id, finished=[report(x) for x in old])
    assert sorted(lost) == sorted(x.attempt_id for x in old)
    assert _jobs(coord, run.id)["once"][0] == "lost"
    # the new process takes the retry and ends it
    (retry,) = coord.lease(w.id, 2)
    assert retry.job_name == "again" and retry.number == 2
    coord.report(w.id, finished=[report(retry)])
    assert _jobs(coord, run.id)["again"][0] == "passed"
    assert coord.store.runs.get(run.id).state.value == "failed"  # `once` was lost


@pytest.mark.parametrize(
    ("second", "rejoin"),
    [
        ("same", True),  # its credential was revoked and it joined again
        ("", False),  # a worker too old to say which process it is
        ("other", True),  # a second live process of the same name, whose credential the
        # first took: they take it back and forth, but not each other's jobs
    ],
)
def test_a_join_that_is_not_known_to_be_a_restart_keeps_the_jobs(
    coord: Coordinator, admin: Principal, second: str, rejoin: bool
) -> None:
    w, _ = coord.join(admin, "w1", {}, 1, ["command"], incarnation="same")
    run = coord.submit(admin, spec({"a": {"command": "true"}}))
    (lease,) = coord.lease(w.id, 1)

    coord.join(admin, "w1", {}, 1, ["command"], incarnation=second, rejoin=rejoin)

    assert _jobs(coord, run.id)["a"][0] == "leased"
    lost, _ = coord.report(w.id, finished=[report(lease)])
    assert lost == []
    assert coord.store.runs.get(run.id).state.value == "passed"


def test_a_worker_whose_first_process_did_not_say_keeps_its_jobs(
    coord: Coordinator, admin: Principal
) -> None:
    w, _ = coord.join(admin, "w1", {}, 1, ["command"])
    run = coord.submit(admin, spec({"a": {"command": "true"}}))
    coord.lease(w.id, 1)
    coord.join(admin, "w1", {}, 1, ["command"], incarnation="new")
    assert _jobs(coord, run.id)["a"][0] == "leased"  # nothing says the old one is gone


def test_a_worker_from_outside_may_not_take_the_name_of_one_inside_a_live_server(
    coord: Coordinator, admin: Principal
) -> None:
    from corral.errors import Conflict

    site, _ = coord.join(admin, "web1", {"site": "web1"}, 8, ["command"], local=True)
    run = coord.submit(admin, spec({"a": {"command": "true", "on": {"site": "web1"}}}))
    (lease,) = coord.lease(site.id, 1)
    with pytest.raises(Conflict, match="web1 is taken by a worker inside corral serve"):
        coord.join(admin, "web1", {"site": "elsewhere"}, 1, ["command"], incarnation="x")
    # nothing changed: the site keeps its labels and its job
    assert coord.worker(site.id).labels == {"site": "web1"}
    assert _jobs(coord, run.id)["a"][0] in ("leased", "running")
    coord.report(site.id, finished=[report(lease)])
    assert _jobs(coord, run.id)["a"][0] == "passed"
    # a server's own worker may take the name back (it restarted), and a name an inside
    # worker held once it is offline (its server is gone) is free
    coord.join(admin, "web1", {"site": "web1"}, 8, ["command"], local=True)
    gone = Coordinator(coord.store, lease_ttl=30.0, offline_after=0.0)
    worker, _ = gone.join(admin, "web1", {"pool": "p"}, 1, ["command"])
    assert not worker.local and worker.labels == {"pool": "p"}
