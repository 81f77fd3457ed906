"""`corral serve --demo`: a new server shows an example run, and it runs to its end."""

from __future__ import annotations

import json

import pytest
from acceptance_helpers import Cluster, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def test_demo_run_shows_and_ends(cluster: Cluster) -> None:
    cluster.start(local_slots=2, demo=True)
    listing = cluster.cli("status")
    assert listing.code == 0, listing
    assert "demo" in listing.out, listing

    runs = json.loads(cluster.cli("status", "--json").out)
    (demo,) = [r for r in runs if r["name"] == "demo"]
    final = cluster.wait_run(demo["id"], timeout=40)
    # the demo fails on purpose (its lint job), so that the failure hook has work to do
    assert final["state"] == "failed"
    shown = json.loads(cluster.cli("status", str(demo["id"]), "--json").out)
    jobs = {j["label"]: j["state"] for j in shown["jobs"]}
    assert jobs == {
        "checkout": "passed",
        "build": "passed",
        "unit-tests": "passed",
        "lint": "failed",
        "notify-failure": "passed",
    }
    logs = cluster.cli("logs", f"{demo['id']}/build")
    assert "build ok" in logs.out, logs
    # the local worker of `corral serve` ran them
    wait_until(lambda: any(w["local"] for w in cluster.workers().values()), 5, "a local worker")
