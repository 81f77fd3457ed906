"""The garbage collector of a started server: its start-up heap frozen, collections rarer.

Each case runs in a process of its own: freezing the test runner's heap would keep every
later test's cycles for good."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from corral import heap

SERVER = """
import gc, json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from corral.config import Settings
from corral.server import Server

server = Server(Settings(home=Path(sys.argv[1]), local_slots=0), settle_heap=sys.argv[2] == "1")
before = (gc.get_freeze_count(), gc.get_threshold())
with TestClient(server.app) as client:
    assert client.get("/healthz").status_code == 200
    after = (gc.get_freeze_count(), gc.get_threshold())
print(json.dumps({"before": before, "after": after}))
"""


def _server(tmp_path: Path, settle: bool) -> dict[str, list[object]]:
    done = subprocess.run(
        [sys.executable, "-c", SERVER, str(tmp_path), "1" if settle else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_started_server_freezes_its_heap_and_collects_less_often(tmp_path: Path) -> None:
    seen = _server(tmp_path, settle=True)
    frozen_before, thresholds_before = seen["before"]
    frozen_after, thresholds_after = seen["after"]
    assert frozen_before == 0 and thresholds_before == [700, 10, 10]
    # the modules, the app and the store are out of every later collection
    assert isinstance(frozen_after, int) and frozen_after > 50_000
    assert thresholds_after == list(heap.THRESHOLDS)


def test_a_server_in_someone_elses_process_leaves_its_collector_alone(tmp_path: Path) -> None:
    seen = _server(tmp_path, settle=False)
    assert seen["after"] == [0, [700, 10, 10]]
