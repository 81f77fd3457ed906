"""corral itself, driven over its HTTP API (the contract is spelled out below).

Contract this adapter assumes (bench/README.md repeats it):

* ``corral serve --home DIR --port PORT --local-slots 2`` (console script of
  bench/.venv) listens on 127.0.0.1:PORT; ready when ``GET /healthz`` is 200.
* The admin token is in ``DIR/token`` (one line); every API call sends
  ``Authorization: Bearer <token>``.
* ``POST /api/v1/runs`` with ``{"name": ..., "jobs": {"j": {"command": "true"}}}``
  answers 201 with JSON holding ``"id"`` (int) and ``"state"``. A batch is one
  run with many jobs (``j0``, ``j1``, ...).
* ``GET /api/v1/runs/{id}/wait?timeout=S`` long-polls: 200 with the run's JSON
  as soon as it has ended, or when S passes; ``"state"`` is one of
  queued/running/passed/failed/canceled.
* Stop: SIGTERM to the server's PID, 10 s grace, then SIGKILL.

Python task bodies do not exist in corral yet, so ``noop`` is the command job
``true`` here as well (the report says so).
"""

from __future__ import annotations

import signal
from importlib import metadata
from typing import Any

import httpx

import corral
from bench import procs
from bench.systems.base import System, remaining

ENDED = {"passed", "failed", "canceled"}
#: the longest single long-poll we ask for (kept below the HTTP read timeout)
WAIT_SLICE_S = 30
COMMAND = {"noop": "true", "shell": "true"}


class CorralSystem(System):
    name = "corral"
    has_batch = True

    def __init__(self, workdir):
        super().__init__(workdir)
        self.client: corral.Client | None = None
        self.server: procs.ManagedProc | None = None
        self._seq = 0  # run names are unique within one server's life

    def version(self) -> str:
        try:
            return metadata.version("corral")
        except metadata.PackageNotFoundError:
            return "not installed"

    def describe(self) -> str:
        return (
            "`corral serve --local-slots 2` on loopback, HTTP API; "
            "noop and shell_true are both the command job `true`"
        )

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        home = self.workdir / "corral-home"
        home.mkdir(parents=True, exist_ok=True)
        port = procs.free_port()
        self.server = self.spawn(
            "corral-serve",
            [
                procs.venv_bin("corral"),
                "serve",
                "--home",
                str(home),
                "--port",
                str(port),
                "--local-slots",
                "2",
            ],
            stop_signal=signal.SIGTERM,
        )
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            return httpx.get(base + "/healthz", timeout=2).status_code == 200

        procs.wait_until("corral /healthz", healthy, timeout=60, procs=[self.server])
        token_file = home / "token"
        procs.wait_until(
            "corral token file",
            lambda: token_file.read_text().strip() != "",
            timeout=10,
            procs=[self.server],
        )
        token = token_file.read_text().strip().splitlines()[0]
        # corral's own client, as its users call it (it also turns off Nagle's delay)
        self.client = corral.Client(base, token)
        self.warm_up()

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        super().stop()

    # -- work -------------------------------------------------------------
    def _post_run(self, name: str, jobs: dict[str, dict[str, Any]]) -> int:
        assert self.client is not None
        return int(self.client.submit({"name": name, "jobs": jobs})["id"])

    def _name(self, kind: str) -> str:
        self._seq += 1
        return f"bench-{kind}-{self._seq}"

    def submit_one(self, i: int, kind: str) -> int:
        return self._post_run(self._name(kind), {"j": {"command": COMMAND[kind]}})

    def batch(self, kind: str, n: int) -> list[int]:
        jobs = {f"j{i}": {"command": COMMAND[kind]} for i in range(n)}
        return [self._post_run(self._name(kind), jobs)]

    def wait_one(self, handle: int, deadline: float) -> None:
        assert self.client is not None
        run = self.client.wait(handle, timeout=remaining(deadline))
        if run["state"] != "passed":
            raise RuntimeError(f"run {handle} ended {run['state']}")

    # -- what it costs ----------------------------------------------------
    def rss_mb(self) -> dict[str, float | None]:
        if self.server is None:
            return {"server": None, "worker": None}
        kids = [k.pid for k in self.server.descendants()]
        return {
            "server": procs.peak_rss_mb([self.server.pid]),
            "worker": procs.peak_rss_mb(kids) if kids else None,
        }
