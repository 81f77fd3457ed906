"""Acceptance helpers: real `corral serve` and `corral worker` processes on loopback.

Every process a test starts is recorded in a `Procs` keeper and stopped by its PID when the
test ends, pass or fail: workers get two SIGTERMs (drain, then kill their jobs and give their
leases back), servers one SIGTERM, and anything still alive after a grace gets SIGKILL. Job
processes that outlive a SIGKILLed worker write their PID to a file the test names, and
are killed from there. Ports are picked free by the kernel; a server that loses the race
for its port is started again on another one.

Polling goes over HTTP (fast); what a person would type goes through the `corral` CLI.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest


def _corral_exe() -> list[str]:
    script = Path(sys.executable).with_name("corral")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from corral.cli.main import main; main()"]


CORRAL = _corral_exe()
READY_TIMEOUT = 30.0  # a cold start on a loaded 2-core machine
CLI_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    """The environment minus anything corral reads, so the developer's setup cannot leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    for var in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"):
        env.pop(var, None)
    env.update(
        {"PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    )
    return env


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# -- processes ---------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Proc:
    """A long-lived process with its stdout and stderr in files (no pipe can fill up)."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], logdir: Path, kind: str
    ) -> None:
        self.name = name
        self.kind = kind  # server | worker | cli
        self.argv = argv
        self.out_path = logdir / f"{name}.out"
        self.err_path = logdir / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            # its own session: a signal for the test runner never reaches it by accident
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=err, env=env, cwd=logdir, start_new_session=True
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self) -> None:
        """By PID: the polite way first, then SIGKILL; always reaped."""
        stop_all([self])

    def tail(self, lines: int = 40) -> str:
        parts = []
        for label, path in (("stdout", self.out_path), ("stderr", self.err_path)):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {self.name} {label} (pid {self.pid})")
            parts.extend(text.splitlines()[-lines:])
        return "\n".join(parts)


class Procs:
    """Everything one test (or the session) started; stopped in reverse order of need."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []
        self.pid_files: list[Path] = []
        self.clients: list[httpx.Client] = []

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for client in self.clients:
            client.close()
        # clients first (they may wait on a server), then workers, then servers
        for kind in ("cli", "worker", "server"):
            stop_all([p for p in self.procs if p.kind == kind])
        for path in self.pid_files:
            kill_job_pids(path)
        for proc in self.procs:
            print(proc.tail())


def stop_all(procs: list[Proc]) -> None:
    """Stop processes together, by PID: SIGTERM (twice for a worker: drain, then stop now),
    SIGKILL after a grace; every one is reaped."""
    live = [p for p in procs if p.alive()]
    for rounds in range(2 if any(p.kind == "worker" for p in live) else 1):
        if rounds:
            time.sleep(0.2)
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.signal(signal.SIGTERM)
    deadline = time.monotonic() + 8.0
    for p in procs:
        try:
            p.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{p.name} (pid {p.pid}) ignored SIGTERM: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.popen.wait(10.0)


def kill_job_pids(path: Path) -> None:
    """Kill the process groups of job processes that recorded `$$` in `path` (one a line).

    Jobs run as session leaders (the executor starts each in a new session), so the PID is
    also the group id; only groups still led by that PID are signalled.
    """
    if not path.exists():
        return
    for line in path.read_text().split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            pid = int(line)
            if pid_alive(pid) and os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)


# -- a coordinator and its workers -------------------------------------------------------


class Cluster:
    """One `corral serve` and the workers and clients a test adds to it."""

    def __init__(self, procs: Procs, base: Path, name: str = "server") -> None:
        self.procs = procs
        self.base = base
        self.name = name
        self.home = base / "home"
        self.logs = base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.url = ""
        self.token = ""
        self.ca: str | None = None
        self.server: Proc | None = None
        self.lease_ttl = ""

    def borrow(self, procs: Procs, base: Path) -> Cluster:
        """This running coordinator, for one test: what the test starts is the test's own."""
        view = copy.copy(self)
        view.procs, view.base, view.logs = procs, base, base / "logs"
        view.logs.mkdir(parents=True, exist_ok=True)
        view.__dict__.pop("_admin_client", None)
        return view

    # -- starting ----------------------------------------------------------------------

    def start(
        self,
        *,
        local_slots: int = 0,
        lease_ttl: str = "3s",
        demo: bool = False,
        tls: tuple[Path, Path, Path] | None = None,
        extra: tuple[str, ...] = (),
    ) -> Cluster:
        """Start `corral serve` and wait for /healthz; tls = (cert, key, ca)."""
        scheme = "https" if tls else "http"
        self.lease_ttl = lease_ttl
        if tls:
            self.ca = str(tls[2])
        for tries in range(3):
            port = free_port()
            argv = [
                *CORRAL,
                "serve",
                "--home",
                str(self.home),
                "--port",
                str(port),
                "--local-slots",
                str(local_slots),
                "--lease-ttl",
                lease_ttl,
                *(["--demo"] if demo else []),
                *(["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []),
                *extra,
            ]
            proc = self.procs.add(
                Proc(f"{self.name}-{tries}", argv, base_env(), self.logs, "server")
            )
            self.url = f"{scheme}://127.0.0.1:{port}"
            if self._await_ready(proc):
                self.server = proc
                break
            if "address already in use" not in proc.stderr().lower():
                pytest.fail(f"corral serve did not start:\n{proc.tail()}")
        else:
            pytest.fail("corral serve found no free port in 3 tries")
        self.token = (self.home / "token").read_text().strip()
        return self

    def _verify(self) -> Any:
        if self.ca:
            import ssl

            return ssl.create_default_context(cafile=self.ca)
        return True

    def _await_ready(self, proc: Proc) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        with httpx.Client(verify=self._verify(), timeout=2.0) as probe:
            while time.monotonic() < deadline:
                if not proc.alive():
                    return False
                try:
                    if probe.get(f"{self.url}/healthz").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        pytest.fail(f"corral serve not ready after {READY_TIMEOUT:.0f}s:\n{proc.tail()}")

    # -- the CLI ---------------------------------------------------------------------------

    def env(self, token: str | None = "admin") -> dict[str, str]:
        """What a person's shell would hold: server, home, and (by default) the admin token."""
        env = base_env()
        env["CORRAL_SERVER"] = self.url
        env["CORRAL_HOME"] = str(self.home)
        if token == "admin":
            env["CORRAL_TOKEN"] = self.token
        elif token:
            env["CORRAL_TOKEN"] = token
        return env

    def cli(
        self,
        *args: str,
        token: str | None = "admin",
        timeout: float = CLI_TIMEOUT,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Result:
        """Run `corral ARGS` to the end; token=None runs with no token at all."""
        full_env = self.env(token)
        if token is None:
            # no CORRAL_TOKEN and a home without a token file
            full_env["CORRAL_HOME"] = str(self.base / "empty-home")
        full_env.update(env or {})
        done = subprocess.run(
            [*CORRAL, *args],
            capture_output=True,
            env=full_env,
            cwd=cwd or self.base,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )

    def cli_many(self, *calls: tuple[str, ...], token: str | None = "admin") -> list[Result]:
        """Run several `corral` commands at once (each is mostly interpreter start-up)."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: self.cli(*args, token=token), calls))

    def cli_bg(self, name: str, *args: str, token: str | None = "admin") -> Proc:
        """Start `corral ARGS` in the background (e.g. a submit that waits for its run)."""
        return self.procs.add(Proc(name, [*CORRAL, *args], self.env(token), self.logs, "cli"))

    # -- workers ---------------------------------------------------------------------------

    def join_token(self) -> str:
        answer = self.http().post("/api/v1/tokens", json={"kind": "join", "name": "test"})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])

    def worker(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        *,
        slots: int = 1,
        join: str | None = None,
        extra: tuple[str, ...] = (),
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> Proc:
        argv = [
            *CORRAL,
            "worker",
            "--server",
            self.url,
            "--token",
            join or self.join_token(),
            "--name",
            name,
            "--slots",
            str(slots),
            # a worker left behind by a crashed test stops by itself once the server is gone
            "--max-offline",
            "15s",
            "--grace",
            "1s",
            "--workdir",
            str(self.base / "work"),
            *(["--ca", self.ca] if self.ca else []),
            *extra,
        ]
        (self.base / "work").mkdir(exist_ok=True)
        for k, v in (labels or {}).items():
            argv += ["--label", f"{k}={v}"]
        proc = self.procs.add(Proc(name, argv, {**base_env(), **(env or {})}, self.logs, "worker"))
        if wait:
            self.await_worker(proc)
        return proc

    def await_worker(self, proc: Proc, timeout: float = 20.0) -> None:
        def online() -> bool:
            if not proc.alive():
                pytest.fail(f"worker {proc.name} exited {proc.popen.returncode}:\n{proc.tail()}")
            w = self.workers().get(proc.name)
            return w is not None and w["state"] == "online"

        wait_until(online, timeout, f"worker {proc.name} online")

    # -- HTTP --------------------------------------------------------------------------------

    def http(self, token: str | None = "admin") -> httpx.Client:
        """An httpx client for this server (closed with the test)."""
        headers = {}
        if token == "admin":
            headers["authorization"] = f"Bearer {self.token}"
        elif token:
            headers["authorization"] = f"Bearer {token}"
        client = httpx.Client(
            base_url=self.url, headers=headers, timeout=30.0, verify=self._verify()
        )
        self.procs.clients.append(client)
        return client

    def _admin(self) -> httpx.Client:
        if not hasattr(self, "_admin_client"):
            self._admin_client = self.http()
        return self._admin_client

    def get(self, path: str, **params: Any) -> Any:
        answer = self._admin().get(path, params=params)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def run(self, ref: int | str) -> dict[str, Any]:
        run: dict[str, Any] = self.get(f"/api/v1/runs/{ref}")
        return run

    def job(self, ref: int | str, label: str) -> dict[str, Any]:
        job: dict[str, Any] = self.get(f"/api/v1/runs/{ref}/jobs/{label}")
        return job

    def jobs(self, ref: int | str) -> dict[str, dict[str, Any]]:
        return {j["label"]: j for j in self.run(ref)["jobs"]}

    def runs(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/runs", limit=500)["runs"])

    def runs_named(self, name: str) -> list[dict[str, Any]]:
        """Runs of this name, newest first."""
        return list(self.get("/api/v1/runs", name=name)["runs"])

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["name"]: w for w in self.get("/api/v1/workers")["workers"]}

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        answer = self._admin().post("/api/v1/runs", json=spec)
        assert answer.status_code == 201, answer.text
        run: dict[str, Any] = answer.json()
        return run

    def wait_run(self, ref: int | str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait (long-poll) until the run ends; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"run {ref} did not end in {timeout:.0f}s: {self.run(ref)}")
            run: dict[str, Any] = self.get(f"/api/v1/runs/{ref}/wait", timeout=min(left, 5.0))
            if run["state"] in ("passed", "failed", "canceled"):
                return run

    def wait_job(
        self, ref: int | str, label: str, states: tuple[str, ...], timeout: float = 20.0
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(ref, label)
            return job if job["state"] in states else None

        found: dict[str, Any] = wait_until(
            reached, timeout, f"job {ref}/{label} in {'|'.join(states)}"
        )
        return found
