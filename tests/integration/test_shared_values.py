"""Key/values jobs publish for later jobs of their run, on both engines: fenced, per host."""

from __future__ import annotations

from integration_helpers import join, report, spec

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.store.shared import Shared


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
    assert not shared.publish(build.attempt_id, "not-the-token", {"VERSION": "0"})
    assert shared.publish(build.attempt_id, build.token, {"VERSION": "1.2"})
    coord.finish(hosts[0].id, [report(build)])
    for w in hosts:
        coord._found_empty.clear()
        (stage,) = coord.lease(w.id, 1)
        assert shared.publish(stage.attempt_id, stage.token, {"PORT": f"80{w.name[-1]}"})
        coord.finish(w.id, [report(stage)])
    # after the end, the holder may not change them
    assert not shared.publish(stage.attempt_id, stage.token, {"PORT": "1"})
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
    assert shared.publish(lease.attempt_id, lease.token, {"K": "v"})
    coord.finish(w.id, [report(lease, "failed", 1)])
    assert shared.of_run(run.id) == {}
