"""Two coordinators on one PostgreSQL wake each other's long-polls through LISTEN/NOTIFY."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.runspec import parse
from corral.store import Store
from corral.store.wakeups import PgWakeups

ADMIN = Principal(token_id=0, kind="admin", name="test")


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_submit_on_one_coordinator_wakes_a_lease_poll_on_another(
    open_store: Callable[..., Store],
) -> None:
    a, b = Coordinator(open_store()), Coordinator(open_store())
    wakeups = [PgWakeups(a.store.db, a.hub), PgWakeups(b.store.db, b.hub)]
    for w in wakeups:
        w.start()
        assert w.ready.wait(10), "LISTEN did not start"
    try:
        worker, _ = b.join(ADMIN, "w1", {}, 1, ["command"])
        got: list[float] = []

        def poll() -> None:
            leases = b.lease_wait(worker.id, 1, wait=10.0)
            got.append(time.monotonic() if leases else -1.0)

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.3)  # the poll is waiting on coordinator b
        submitted = time.monotonic()
        a.submit(ADMIN, parse({"jobs": {"j": {"command": "true"}}}))
        t.join(15)
        assert got and got[0] > 0, "the lease poll on b never got the job"
        # without the notification b would only look again after its 5 s slice
        assert got[0] - submitted < 4.0
    finally:
        for w in wakeups:
            w.stop()
