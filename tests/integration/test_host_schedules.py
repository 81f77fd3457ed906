"""Schedules that look at hosts, on both engines: per-host (one job of a run at a time on a
host, hosts in parallel) and exclusive (no other run's jobs on the run's hosts until it ends)."""

from __future__ import annotations

from integration_helpers import join, report, spec

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Lease, Worker
from corral.domain.runspec import RunSpec
from corral.domain.states import RunState


def lease_all(coord: Coordinator, w: Worker) -> list[Lease]:
    coord._found_empty.clear()  # ask the store every time, not the "came back short" memory
    return coord.lease(w.id, 10)


def finish(coord: Coordinator, w: Worker, leases: list[Lease]) -> None:
    coord.finish(w.id, [report(x) for x in leases])


def steps(schedule: str, name: str, *names: str, role: str = "app") -> RunSpec:
    step = {"fanout": "each", "on": {"role": role}}
    return spec({n: {"command": n, **step} for n in names}, name=name, schedule=schedule)


def test_per_host_runs_one_job_at_a_time_on_each_host_in_order(
    coord: Coordinator, admin: Principal
) -> None:
    hosts = [join(coord, admin, f"web{i}", slots=8, role="app") for i in (1, 2)]
    run = coord.submit(admin, steps("per-host", "deploy", "stop", "update", "start"))
    for step in ("stop", "update", "start"):
        held = {}
        for w in hosts:
            got = lease_all(coord, w)
            assert [(x.job_name, x.instance) for x in got] == [(step, w.name)]
            assert lease_all(coord, w) == []  # one at a time on this host
            held[w.id] = got
        for w in hosts:
            finish(coord, w, held[w.id])
    assert coord.store.runs.get(run.id).state is RunState.PASSED


def test_parallel_hands_a_host_every_job_at_once(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "web1", slots=8, role="app")
    coord.submit(admin, steps("parallel", "deploy", "stop", "update", "start"))
    assert sorted(x.job_name for x in lease_all(coord, w)) == ["start", "stop", "update"]


def test_exclusive_keeps_other_runs_off_its_hosts_until_it_ends(
    coord: Coordinator, admin: Principal
) -> None:
    web1 = join(coord, admin, "web1", slots=8, role="app", site="web1")
    web2 = join(coord, admin, "web2", slots=8, role="db", site="web2")
    maint = coord.submit(admin, steps("exclusive", "maint", "drain", "patch"))
    coord.submit(
        admin,
        spec(
            {
                "on-web1": {"command": "x", "fanout": "each", "on": {"site": "web1"}},
                "anywhere": {"command": "y"},
            },
            name="other",
        ),
    )
    # web1 belongs to the exclusive run: only its jobs, one at a time
    (first,) = lease_all(coord, web1)
    assert (first.run_name, first.job_name) == ("maint", "drain")
    assert lease_all(coord, web1) == []
    # web2 is not one of its hosts: the other run's unpinned job runs there
    assert [x.job_name for x in lease_all(coord, web2)] == ["anywhere"]
    finish(coord, web1, [first])
    (second,) = lease_all(coord, web1)
    assert second.job_name == "patch"
    assert lease_all(coord, web1) == []
    finish(coord, web1, [second])
    assert coord.store.runs.get(maint.id).state is RunState.PASSED
    # the run ended: web1 is free for others
    assert [x.job_name for x in lease_all(coord, web1)] == ["on-web1"]


def test_an_exclusive_run_waits_for_other_runs_jobs_on_its_hosts(
    coord: Coordinator, admin: Principal
) -> None:
    web1 = join(coord, admin, "web1", slots=8, role="app")
    busy = coord.submit(admin, steps("parallel", "busy", "long"))
    (long,) = lease_all(coord, web1)
    assert long.run_id == busy.id
    coord.submit(admin, steps("exclusive", "maint", "patch"))
    assert lease_all(coord, web1) == []  # the other run's job is still running there
    finish(coord, web1, [long])
    (patch,) = lease_all(coord, web1)
    assert patch.job_name == "patch"


def test_of_two_exclusive_runs_the_older_goes_first(coord: Coordinator, admin: Principal) -> None:
    web1 = join(coord, admin, "web1", slots=8, role="app")
    older = coord.submit(admin, steps("exclusive", "first", "a"))
    coord.submit(admin, steps("exclusive", "second", "b"))
    (a,) = lease_all(coord, web1)
    assert a.run_id == older.id
    assert lease_all(coord, web1) == []
    finish(coord, web1, [a])
    (b,) = lease_all(coord, web1)
    assert b.run_name == "second"
