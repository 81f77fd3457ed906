"""Key/values jobs publish for later jobs of their run, on both engines: fenced, per host."""

from __future__ import annotations

from integration_helpers import join, spec

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Lease, Report
from corral.errors import LeaseLost
from corral.store.shared import Shared, shared_result


def ended(lease: Lease, values: dict[str, str], outcome: str = "passed", token: str = "") -> Report:
    """An attempt's end carrying the key/values its job published."""
    code = 0 if outcome == "passed" else 1
    return Report(
        lease.attempt_id, token or lease.token, outcome, code, "", result=shared_result(values)
    )


def test_values_flow_per_host_and_only_from_the_lease_holder(
    coord: Coordinator, admin: Principal
) -> None:
    shared = Shared(coord.store.db)
    hosts = [join(coord, admin, f"web{i}", role="app") for i in (1, 2)]
    run = coord.submit(
        admin,
        spec(
            {
                "build": {"command": "b"},
                "stage": {"command": "s", "fanout": "each", "on": {"role": "app"}},
                "use": {"command": "u", "fanout": "each", "on": {"role": "app"}},
            },
            schedule="sequential",
        ),
    )
    (build,) = coord.lease(hosts[0].id, 1)
    (refused,) = coord.finish(hosts[0].id, [ended(build, {"VERSION": "0"}, token="x" * 32)])
    assert isinstance(refused, LeaseLost)
    coord.finish(hosts[0].id, [ended(build, {"VERSION": "1.2"})])
    for w in hosts:
        coord._found_empty.clear()
        (stage,) = coord.lease(w.id, 1)
        coord.finish(w.id, [ended(stage, {"PORT": f"80{w.name[-1]}"})])
    # the same end again changes nothing (a finish is recorded once)
    coord.finish(hosts[1].id, [ended(stage, {"PORT": "1"})])
    assert shared.of_run(run.id) == {
        "build": {"VERSION": "1.2"},
        "stage[web1]": {"PORT": "801"},
        "stage[web2]": {"PORT": "802"},
    }
    assert shared.env_for(run.id, "web2") == {
        "CORRAL_SHARED_BUILD_VERSION": "1.2",
        "CORRAL_SHARED_STAGE_PORT": "802",
    }


def test_a_failed_job_shares_nothing(coord: Coordinator, admin: Principal) -> None:
    shared = Shared(coord.store.db)
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec({"a": {"command": "a"}}))
    (lease,) = coord.lease(w.id, 1)
    coord.finish(w.id, [ended(lease, {"K": "v"}, "failed")])
    assert shared.of_run(run.id) == {}


def test_a_lease_says_whether_its_run_holds_values_yet(
    coord: Coordinator, admin: Principal
) -> None:
    w = join(coord, admin, "w1")
    quiet = coord.submit(admin, spec({"a": {"command": "a"}, "b": {"command": "b"}}))
    first, second = coord.lease(w.id, 2)
    assert not first.run_shared and not second.run_shared
    coord.finish(w.id, [Report(first.attempt_id, first.token, "passed", 0, "")])
    coord.finish(w.id, [ended(second, {"K": "v"}, "failed")])  # a failure publishes nothing
    run = coord.submit(
        admin, spec({"a": {"command": "a"}, "b": {"command": "b"}}, schedule="sequential")
    )
    coord._found_empty.clear()
    (a,) = coord.lease(w.id, 2)
    assert not a.run_shared
    coord.finish(w.id, [ended(a, {"K": "v"})])
    (b,) = coord.lease(w.id, 2)
    assert b.run_shared and b.run_id == run.id != quiet.id
