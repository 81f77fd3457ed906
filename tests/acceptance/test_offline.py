"""A worker that loses its coordinator stops by itself after --max-offline."""

from __future__ import annotations

import signal
import time

import pytest
from acceptance_helpers import Cluster, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def test_worker_stops_after_max_offline(cluster: Cluster) -> None:
    cluster.start()
    worker = cluster.worker("lonely", extra=("--max-offline", "2s"))
    # online on the server once its join is stored, which may be before the worker has the
    # answer: killed in between, the worker would fail its join instead
    wait_until(lambda: "joined" in worker.stdout(), 10, "the worker to have its join's answer")
    assert cluster.server is not None
    cluster.server.signal(signal.SIGKILL)
    gone = time.monotonic()
    code = worker.wait(timeout=20)
    waited = time.monotonic() - gone
    assert code != 0  # stopping for lack of a coordinator is an error, not a drain
    assert "no coordinator for 2s" in worker.stderr()
    # the limit plus one call's retries (a quarter of it): before, calls retried 5 s first
    assert 2.0 <= waited < 6.0
