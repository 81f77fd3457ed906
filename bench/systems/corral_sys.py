"""corral itself, driven over its HTTP API (the contract is spelled out below).

Contract this adapter assumes (bench/README.md repeats it):

* ``corral serve --home DIR --port PORT --local-slots 2`` (console script of
  bench/.venv) listens on 127.0.0.1:PORT; ready when ``GET /healthz`` is 200.
* The admin token is in ``DIR/token`` (one line); every API call sends
  ``Authorization: Bearer <token>``.
* ``POST /api/v1/runs`` with ``{"name": ..., "jobs": {"j": {"command": "true"}}}``
  answers 201 with JSON holding ``"id"`` (int) and ``"state"``. A batch is one
  run with many jobs (``j0``, ``j1``, ...).
* ``POST /api/v1/runs?wait=S`` answers when the run has ended (or S passes), with
  ``"results"``: every job's label, state and result. W2 calls a task this way.
* ``GET /api/v1/runs/{id}/wait?timeout=S`` long-polls: 200 with the run's JSON
  as soon as it has ended, or when S passes; ``"state"`` is one of
  queued/running/passed/failed/canceled.
* ``POST /api/v1/runs/wait`` with ``{"runs": [id, ...], "timeout": S}`` long-polls for many
  runs at once: 200 with ``{"runs": [{"id", "state"}, ...], "ended": bool}`` when all have
  ended or S passes. W1 waits for its runs this way (``Client.wait_all``).
* Stop: SIGTERM to the server's PID, 10 s grace, then SIGKILL.

``noop`` is the registered Python task of ``bench/tasks/corral_tasks.py``
(the server starts with ``--tasks bench/tasks``; a job is ``{"task": "noop",
"args": {"x": i}}``) unless ``BENCH_CORRAL_NOOP=command`` (``--corral-noop
command``) asks for the command job ``true``; ``shell_true`` is always the
command job ``true`` (BENCH.md). The report says which form ran.
"""

from __future__ import annotations

import os
import signal
import time
from importlib import metadata
from typing import Any

import httpx

import corral
from bench import procs
from bench.systems.base import System, check_value, remaining

ENDED = {"passed", "failed", "canceled"}
#: the longest single long-poll we ask for (kept below the HTTP read timeout)
WAIT_SLICE_S = 30
COMMAND = {"noop": "true", "shell": "true"}
TASKS_DIR = procs.REPO_ROOT / "bench" / "tasks"


def noop_form() -> str:
    """ "task" (the registered Python task, the default) or "command" (the command job `true`)."""
    form = os.environ.get("BENCH_CORRAL_NOOP", "task")
    if form not in ("task", "command"):
        raise ValueError(f"BENCH_CORRAL_NOOP must be task or command, not {form!r}")
    return form


def job_spec(kind: str, i: int, form: str) -> dict[str, Any]:
    """One job of the run spec: noop as a task call (or `true`), shell_true as `true`."""
    if kind == "noop" and form == "task":
        return {"task": "noop", "args": {"x": i}}
    return {"command": COMMAND[kind]}


class CorralSystem(System):
    name = "corral"
    has_batch = True

    def __init__(self, workdir):
        super().__init__(workdir)
        self.client: corral.Client | None = None
        self.server: procs.ManagedProc | None = None
        self._seq = 0  # run names are unique within one server's life
        self.form = noop_form()
        self.extra_args: list[str] = []  # more `corral serve` flags (other workloads)
        self.launcher = [procs.venv_bin("corral")]
        self.env: dict[str, str] = {}
        self.home = self.workdir / "corral-home"
        self.base = ""
        self.token = ""

    def version(self) -> str:
        try:
            return metadata.version("corral")
        except metadata.PackageNotFoundError:
            return "not installed"

    def describe(self) -> str:
        if self.form == "task":
            noop = "noop is the registered Python task `noop(x)` (`--tasks bench/tasks`)"
        else:
            noop = "noop is the command job `true`"
        return (
            "`corral serve --local-slots 2 --tasks bench/tasks` on loopback, HTTP API; "
            f"{noop}; shell_true is the command job `true`"
        )

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        home = self.home
        home.mkdir(parents=True, exist_ok=True)
        port = procs.free_port()
        self.server = self.spawn(
            "corral-serve",
            [
                *self.launcher,
                "serve",
                "--home",
                str(home),
                "--port",
                str(port),
                "--local-slots",
                "2",
                "--tasks",
                str(TASKS_DIR),
                *self.extra_args,
            ],
            stop_signal=signal.SIGTERM,
            env=self.env,
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
        self.base, self.token = base, token
        self.warm_up()
        if self.form == "task":
            # the task really ran and returned its argument (not just a passed state)
            run = self._post_run(self._name("noop"), {"j": job_spec("noop", 7, "task")})
            self.wait_one(run, time.monotonic() + 60)
            got = self.client.result(run, "j")
            if got != 7:
                raise RuntimeError(f"corral task noop(7) returned {got!r}")

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
        return self._post_run(self._name(kind), {"j": job_spec(kind, i, self.form)})

    def batch(self, kind: str, n: int) -> list[int]:
        jobs = {f"j{i}": job_spec(kind, i, self.form) for i in range(n)}
        return [self._post_run(self._name(kind), jobs)]

    def wait(self, handles: list[int], deadline: float) -> None:
        """Many runs in one request (one per 10,000), as a user of `Client.wait_all` waits."""
        assert self.client is not None
        ended = self.client.wait_all(handles, timeout=remaining(deadline))
        bad = [r for r in ended if r["state"] != "passed"]
        if bad:
            raise RuntimeError(f"run {bad[0]['id']} ended {bad[0]['state']}")

    def wait_one(self, handle: int, deadline: float) -> None:
        assert self.client is not None
        run = self.client.wait(handle, timeout=remaining(deadline))
        if run["state"] != "passed":
            raise RuntimeError(f"run {handle} ended {run['state']}")

    def call_one(self, i: int, kind: str, deadline: float) -> None:
        """One request: the submit answers when the run has ended, with the job's result."""
        assert self.client is not None
        spec = {"name": self._name(kind), "jobs": {"j": job_spec(kind, i, self.form)}}
        left = min(remaining(deadline), 300.0)
        run = self.client.submit(spec, wait=left)
        if run.state != "passed":
            raise RuntimeError(f"run {run.id} ended {run.state}")
        if kind == "noop" and self.form == "task":
            check_value(run.result("j"), i, "corral")

    # -- what it costs ----------------------------------------------------
    def rss_mb(self) -> dict[str, float | None]:
        if self.server is None:
            return {"server": None, "worker": None}
        kids = [k.pid for k in self.server.descendants()]
        return {
            "server": procs.peak_rss_mb([self.server.pid]),
            "worker": procs.peak_rss_mb(kids) if kids else None,
        }
