"""Acceptance fixtures: coordinators as real `corral serve` processes.

`cluster`: one per test, started as the test says (TLS, demo, a short lease TTL);
`fleet`: one per module, no local worker; `shared`: one per session, with a local worker.
Whatever a test starts (workers, clients, job processes) is stopped by PID when it ends.
The helpers (processes, clusters, polling) live in `acceptance_helpers`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from acceptance_helpers import Cluster, Procs


@pytest.fixture
def procs() -> Iterator[Procs]:
    keeper = Procs()
    try:
        yield keeper
    finally:
        keeper.close()


@pytest.fixture
def cluster(procs: Procs, tmp_path: Path) -> Cluster:
    """A coordinator not started yet: the test says how (`cluster.start(...)`)."""
    return Cluster(procs, tmp_path)


@pytest.fixture(scope="session")
def _shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    keeper = Procs()
    try:
        yield Cluster(keeper, tmp_path_factory.mktemp("shared"), "shared").start(
            local_slots=2, lease_ttl="3s"
        )
    finally:
        keeper.close()


@pytest.fixture
def shared(_shared_server: Cluster, procs: Procs, tmp_path: Path) -> Cluster:
    """One coordinator for the session, with a local worker (2 slots) and a 3 s lease TTL, for
    tests that need no special setup. Tests keep to their own runs (and labels, for workers
    of their own); what a test starts is stopped when it ends."""
    return _shared_server.borrow(procs, tmp_path)


@pytest.fixture(scope="module")
def _fleet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    keeper = Procs()
    try:
        yield Cluster(keeper, tmp_path_factory.mktemp("fleet"), "fleet").start(
            local_slots=0, lease_ttl="10s"
        )
    finally:
        keeper.close()


@pytest.fixture
def fleet(_fleet_server: Cluster, procs: Procs, tmp_path: Path) -> Cluster:
    """A coordinator with no local worker and a 10 s lease TTL, shared by a module's tests;
    the workers a test starts are stopped when it ends. Tests keep to their own labels."""
    return _fleet_server.borrow(procs, tmp_path)


# ten real sshd hosts for the fleet's tests (session-scoped; started only when a test asks)
from fleet_sshd import ssh_fleet  # noqa: E402, F401
