"""How far this design can go on this machine: two probes behind docs/benchmarks.md's "limits".

    python -m bench.limits local     # the local task path: the real agent, then one thread
    python -m bench.limits submits   # single-job submits over HTTP, with and without a worker
    python -m bench.limits leases    # a fleet's lease round in the store, 20 and 200 sites
    python -m bench.limits waits     # W2's call (`submit?wait` of one task job), fresh servers
    python -m bench.limits rounds    # W6's coordinator-side round on 20 sshd hosts
    python -m bench.limits cpu       # W6's round, corral's and execnet's: the machine's CPU
    python -m bench.limits steps     # W2's call and W1's submit taken apart, each step alone

`local` runs N task jobs (`noop`, already submitted, no HTTP) three ways in one process, on
the same coordinator, store and task runner processes:

* **agent**: the local worker as `corral serve` runs it (a leaser, a reporter, one thread per
  slot);
* **one thread**: the least any worker could do: one thread leases 32 jobs at a time, sends
  each call to whichever of the two task processes is free, reads the replies and reports
  the ends 32 at a time, with the job's environment and the stdout and stderr pipes watched
  as the agent does, and nothing else (no timeouts, kills, logs, heartbeats or retirement);
* **one thread + reporter**: the same with the ends reported from a second thread, as the
  agent's reporter does.

Each prints jobs/s from the first lease to the last end, and the process's CPU per job (all
its threads; the task processes are apart).

`submits` starts `corral serve` twice (`--local-slots 0`, then `2`) and posts single-job runs
one after another from corral's client: how fast a submit is on its own, and while the local
worker runs what was submitted.

`leases` measures the store's side of a fleet round in one process, with no hosts: a run of
one command job per site is submitted, one lease round asks for every site at once
(`Coordinator.lease_for`, as the fleet's leaser does) and every end is recorded in one report;
it prints the CPU of each of the three, per round, for 20 and for 200 sites.

`waits` starts a fresh `corral serve --local-slots 2` for each repetition and makes N calls
(`submit?wait` of one `noop` task job, after 50 to warm up), one after another, as W2 does;
it prints each server's p50 and p99.

`rounds` starts 20 sshd hosts and a `corral serve` with them in its inventory, and times N
coordinator-side rounds (one run of `true` on every host, submitted with `wait`, after 30 to
connect and warm up), as W6's `corral (API)` does; it prints each repetition's median.

`cpu` runs W6's round for corral (API) and bare execnet in turn on the same 20 sshd hosts,
N rounds a set, and prints each set's median round and the whole machine's CPU a round from
`/proc`, by kind of process: the coordinator (execnet's caller), the hosts' Python (with
their watchdogs), the `true` processes (the CPU the hosts' Python reaped), ssh and sshd,
corral's client, and the rest.

`steps` takes W2's call apart and times each step it cannot do without, alone, on one thread
of one process (a store with no worker; nothing else runs, no thread hands work to another):
the spec parsed, the run stored (unsynced, as a submit with `wait` is), its job leased, the
task called in a task process as the worker calls it, its end recorded with the synced commit
the answer waits for, and the answer read and encoded; then the HTTP round trip of an app that
does no work at all (corral's client, uvicorn; the floor of `bench/floor_http`). Their sum is
the least a W2 call can cost on this machine. It also times a synced submit (W1's single
submit, durable before its 201) and prints the most runs a second one caller could submit.

`submits`, `waits` and `rounds` start the `corral` of `bench/.venv`, which imports corral from
this checkout: `PYTHONPATH=OTHER/src python -m bench.limits waits` measures another checkout's
code (a worktree of an earlier commit, say) with the same harness, for an A/B.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import procs

TASKS = procs.REPO_ROOT / "bench" / "tasks"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _spec(n: int, name: str) -> Any:
    from corral.domain.runspec import parse

    jobs = {f"j{i}": {"task": "noop", "args": {"x": i}} for i in range(n)}
    return parse({"name": name, "jobs": jobs})


def local(n: int, reps: int) -> None:
    from corral import events
    from corral.auth import Principal
    from corral.config import Settings
    from corral.server import Server

    home = Path(tempfile.mkdtemp(prefix="corral-limits-"))
    server = Server(Settings(home=home, local_slots=2, tasks=(str(TASKS),)))
    coord = server.coordinator
    admin = Principal(token_id=0, kind="admin", name="limits")
    ran = 0

    def submit(size: int) -> Any:
        nonlocal ran
        ran += 1
        return coord.submit(admin, _spec(size, f"limits-{ran}"))

    figures: dict[str, list[tuple[float, float]]] = {}

    # the agent, as `corral serve` runs it
    server.start_local_worker()
    assert server.agent is not None
    for rep in range(reps + 1):
        size = n if rep else 200  # the first one warms up
        topic = events.run_end_topic(ran + 1)  # the next run's id (a fresh store)
        version = coord.hub.version(topic)
        run = submit(size)
        if run.id != ran or topic != events.run_end_topic(run.id):
            raise RuntimeError("the probe's store is not fresh")
        c0, t0 = _cpu(), time.perf_counter()
        # woken at the run's end: a poll of the run would cost the process CPU of its own
        while (
            not coord.hub.wait(topic, version, 60.0) or not coord.store.runs.get(run.id).state.ended
        ):
            version = coord.hub.version(topic)
        took, cpu = time.perf_counter() - t0, _cpu() - c0
        if rep:
            figures.setdefault("agent", []).append((size / took, cpu * 1000 / size))
    server.agent.stop("the probe goes on without it")
    server.agent.wait_stopped(10)

    for name, with_reporter in (("one thread", False), ("one thread + reporter", True)):
        loop = _OneThread(coord, home / name.replace(" ", "-").replace("+", "and"), with_reporter)
        for rep in range(reps + 1):
            size = n if rep else 200
            run = submit(size)
            rate, cpu_ms = loop.run(size)
            if coord.store.runs.get(run.id).state.value != "passed":
                raise RuntimeError(f"{name}: the run did not pass")
            if rep:
                figures.setdefault(name, []).append((rate, cpu_ms))
        loop.close()
    for name, values in figures.items():
        rates = ", ".join(f"{r:,.0f}" for r, _ in values)
        cpus = ", ".join(f"{c:.3f}" for _, c in values)
        print(f"{name:24s} jobs/s {rates}   CPU ms/job {cpus}")


class _OneThread:
    """Lease → call → end on one thread, over two task processes of a TaskPool."""

    BATCH = 32

    def __init__(self, coord: Any, home: Path, with_reporter: bool) -> None:
        from corral.worker.link import LocalLink
        from corral.worker.task_pool import PoolOptions, TaskPool

        self.coord = coord
        self.link = LocalLink(coord, home.name, {"limits": "true"}, 2, ["task"])
        workdir = home / "work"
        workdir.mkdir(parents=True)
        self.pool = TaskPool(
            self.link.task_source,
            PoolOptions(cache_dir=str(home / "sources"), workdir_root=str(workdir)),
        )
        self.procs = [self.pool.take(), self.pool.take()]
        self.poller = select.poll()
        self.by_fd: dict[int, Any] = {}
        for p in self.procs:
            self.poller.register(p.rep_r, select.POLLIN)
            self.by_fd[p.rep_r] = p
            for fd in (p.out_fd, p.err_fd):  # watched as the agent watches them
                self.poller.register(fd, select.POLLIN)
                self.by_fd[fd] = None
        self.with_reporter = with_reporter
        self.cond = threading.Condition()
        self.box: list[Any] = []
        self.reported = 0
        if with_reporter:
            threading.Thread(target=self._reporter, daemon=True).start()

    def _reporter(self) -> None:
        from corral.worker.agent import COALESCE_ENDS

        while True:
            with self.cond:
                while not self.box:
                    self.cond.wait()
                self.cond.wait(COALESCE_ENDS)  # as the agent's reporter gathers ends
                batch, self.box = self.box, []
            self.coord.report(self.link.worker_id, finished=batch)
            with self.cond:
                self.reported += len(batch)
                self.cond.notify_all()

    def _send(self, proc: Any, lease: Any) -> tuple[Any, str, float]:
        payload = lease.payload
        workdir = self.pool.workdir()
        proc.send(
            {
                "sha256": payload["sha256"],
                "module": payload["module"],
                "function": payload["function"],
                "path": self.pool.source_path(str(payload["sha256"]), str(payload["module"])),
                "args": dict(payload.get("args") or {}),
                "env": {
                    "CORRAL_RUN": str(lease.run_id),
                    "CORRAL_RUN_NAME": lease.run_name,
                    "CORRAL_JOB": lease.job_name,
                    "CORRAL_ATTEMPT": str(lease.number),
                    "CORRAL_WORKER": self.link.worker_name,
                },
                "cwd": workdir,
            }
        )
        return lease, workdir, time.time()

    def run(self, n: int) -> tuple[float, float]:
        from corral.domain.models import Report

        c0, t0 = _cpu(), time.perf_counter()
        queue: list[Any] = []
        busy: dict[Any, tuple[Any, str, float]] = {}
        ends: list[Any] = []
        done = 0
        self.reported = 0
        while done < n:
            if len(queue) < 8:
                queue.extend(self.coord.lease_for([(self.link.worker_id, self.BATCH)])[0])
            for p in self.procs:
                if p not in busy and queue:
                    busy[p] = self._send(p, queue.pop(0))
            for fd, _ in self.poller.poll(50):
                p = self.by_fd[fd]
                if p is None:
                    os.read(fd, 65536)  # a noop prints nothing
                    continue
                p.reply += os.read(fd, 65536)
                if not p.reply.endswith(b"\n"):
                    continue
                reply, p.reply = p.reply, b""
                kept = p.note_reply(reply)
                lease, workdir, started = busy.pop(p)
                self.pool.done_with(workdir, kept)
                if queue:  # the next call first: the process works while the end is handled
                    busy[p] = self._send(p, queue.pop(0))
                value = json.loads(reply)["result"]
                ends.append(
                    Report(
                        lease.attempt_id,
                        lease.token,
                        "passed",
                        0,
                        "returned",
                        started,
                        result=value,
                    )
                )
            if ends and (len(ends) >= self.BATCH or done + len(ends) >= n):
                if self.with_reporter:
                    with self.cond:
                        self.box.extend(ends)
                        self.cond.notify()
                else:
                    self.coord.report(self.link.worker_id, finished=ends)
                done += len(ends)
                ends = []
        if self.with_reporter:
            with self.cond:
                while self.reported < n:
                    self.cond.wait()
        took = time.perf_counter() - t0
        return n / took, (_cpu() - c0) * 1000 / n

    def close(self) -> None:
        for p in self.procs:
            self.pool.give(p)
        self.pool.close()


def submits(n: int, reps: int) -> None:
    for slots in (0, 2):
        rates = _submit_rates(slots, n, reps)
        shown = ", ".join(f"{r:,.0f}" for r in rates)
        median = statistics.median(rates)
        print(f"--local-slots {slots}: single-job submits/s {shown} (median {median:,.0f})")


@contextlib.contextmanager
def _serving(slots: int) -> Iterator[Any]:
    """A fresh `corral serve --local-slots SLOTS --tasks bench/tasks`, and a client of it."""
    import corral

    home = tempfile.mkdtemp(prefix="corral-limits-")
    port = procs.free_port()
    argv = [procs.venv_bin("corral"), "serve", "--home", home, "--port", str(port)]
    server = subprocess.Popen(
        [*argv, "--local-slots", str(slots), "--tasks", str(TASKS)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    token_file = Path(home) / "token"

    def ready() -> bool:
        up = httpx.get(base + "/healthz", timeout=2).status_code == 200
        return up and token_file.exists() and token_file.read_text().strip() != ""

    try:
        procs.wait_until("corral serve", ready, timeout=60)
        client = corral.Client(base, token_file.read_text().split()[0])
        try:
            yield client
        finally:
            client.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)


def _submit_rates(slots: int, n: int, reps: int) -> list[float]:
    with _serving(slots) as client:
        rates = []
        for rep in range(reps):
            t0 = time.perf_counter()
            for i in range(n):
                job = {"task": "noop", "args": {"x": i}}
                client.submit({"name": f"s{rep}-{i}", "jobs": {"j": job}})
            rates.append(n / (time.perf_counter() - t0))
        return rates


def _call(client: Any, i: int) -> float:
    """One W2 call: ms from the submit to its answer with the result."""
    t0 = time.perf_counter()
    job = {"task": "noop", "args": {"x": i}}
    run = client.submit({"name": f"w{i}", "jobs": {"j": job}}, wait=30)
    if run.state != "passed" or run.result("j") != i:
        raise RuntimeError(f"run {run.id} ended {run.state}")
    return (time.perf_counter() - t0) * 1000


def waits(n: int, reps: int) -> None:
    for rep in range(reps):
        with _serving(2) as client:
            for i in range(50):
                _call(client, -1 - i)
            took = sorted(_call(client, i) for i in range(n))
        p50, p99 = took[len(took) // 2], took[min(len(took) - 1, int(len(took) * 0.99))]
        print(f"server {rep + 1}: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {n} calls")


def rounds(n: int, reps: int) -> None:
    from bench import sshd_fleet
    from bench.w6_fleet import CorralFleet

    for rep in range(reps):
        work = Path(tempfile.mkdtemp(prefix="corral-limits-"))
        work.chmod(0o755)  # the hosts' user reads its keys below it
        fleet = sshd_fleet.start(work / "sshd", 20)
        try:
            peer = CorralFleet(fleet, work / "corral")
            try:
                for _ in range(30):
                    peer.api_round(peer.sites)
                took = [peer.api_round(peer.sites) for _ in range(n)]
            finally:
                peer.close()
        finally:
            fleet.stop()
        print(f"repetition {rep + 1}: median round {statistics.median(took):.1f} ms over {n}")


def _processes() -> dict[int, tuple[str, float, float]]:
    """Every process's kind, CPU seconds, and CPU seconds of its reaped children (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        if comm.startswith("sshd") or comm == "ssh":
            kind = "ssh and sshd"
        elif "corral" in cmd and " serve" in cmd:
            kind = "the coordinator"
        elif comm.startswith("python") and "exec(eval(" in cmd:
            kind = "the hosts' Python"
        elif comm.startswith("python") and "-S -c" in cmd:
            kind = "the hosts' Python"  # each connection's watchdog
        elif int(name) == os.getpid():
            kind = "the coordinator"  # execnet's caller is this process
        else:
            kind = "other"
        out[int(name)] = (kind, (utime + stime) / tick, (cutime + cstime) / tick)
    return out


def cpu(n: int, reps: int) -> None:
    """W6's round, corral's (API) and execnet's, alternating on the same 20 sshd hosts: the
    median round and every process's CPU a round, by kind. The `true` processes are counted
    as the CPU the hosts' Python reaped. corral's client is this process too: its part is
    counted with "the coordinator" for execnet and apart for corral."""
    from bench import sshd_fleet
    from bench.w6_fleet import CorralFleet, Execnet

    work = Path(tempfile.mkdtemp(prefix="corral-limits-"))
    work.chmod(0o755)  # the hosts' user reads its keys below it
    fleet = sshd_fleet.start(work / "sshd", 20)
    try:
        corral = CorralFleet(fleet, work / "corral")
        execnet = Execnet(fleet, work / "execnet")
        try:
            corral.cold()
            execnet.cold()
            sites = corral.sites
            for _ in range(20):
                corral.api_round(sites)
                execnet.warm()
            me = os.getpid()
            for rep in range(reps):
                for name, round_ in (
                    ("corral", lambda: corral.api_round(sites)),
                    ("execnet", execnet.warm),
                ):
                    before = _processes()
                    took = []
                    for _ in range(n):
                        t0 = time.perf_counter()
                        round_()
                        took.append((time.perf_counter() - t0) * 1000)
                    after = _processes()
                    spent: dict[str, float] = {}
                    for pid, (kind, used, reaped) in after.items():
                        was = before.get(pid, (kind, 0.0, 0.0))
                        if pid == me and name == "corral":
                            kind = "corral's client"
                        spent[kind] = spent.get(kind, 0.0) + used - was[1]
                        if kind == "the hosts' Python":
                            spent["the `true` processes"] = (
                                spent.get("the `true` processes", 0.0) + reaped - was[2]
                            )
                    parts = ", ".join(
                        f"{k} {v * 1000 / n:.1f}" for k, v in sorted(spent.items()) if v > 0
                    )
                    total = sum(spent.values()) * 1000 / n
                    print(
                        f"set {rep + 1} {name}: median round {statistics.median(took):.1f} ms; "
                        f"CPU ms a round {total:.1f}: {parts}",
                        flush=True,
                    )
        finally:
            corral.close()
            execnet.close()
    finally:
        fleet.stop()


def steps(n: int) -> None:
    """W2's call taken apart: each step it cannot do without, timed alone on one thread (no
    thread hand-offs, nothing else running), and the HTTP round trip with no work at all."""
    from bench import floors
    from corral.api.deps import answer
    from corral.api.schemas import run_json
    from corral.auth import Principal
    from corral.config import Settings
    from corral.domain.models import Report
    from corral.domain.runspec import parse
    from corral.server import Server
    from corral.worker.link import LocalLink
    from corral.worker.task_pool import PoolOptions, TaskPool

    home = Path(tempfile.mkdtemp(prefix="corral-limits-"))
    server = Server(Settings(home=home, local_slots=0, tasks=(str(TASKS),)))
    coord = server.coordinator
    admin = Principal(token_id=0, kind="admin", name="limits")
    link = LocalLink(coord, "steps", {"limits": "true"}, 2, ["task"])
    (home / "work").mkdir()
    pool = TaskPool(
        link.task_source,
        PoolOptions(cache_dir=str(home / "sources"), workdir_root=str(home / "work")),
    )
    took: dict[str, list[float]] = {}

    def one(i: int, keep: bool) -> None:
        body = json.dumps({"name": f"w{i}", "jobs": {"j": {"task": "noop", "args": {"x": i}}}})
        stamps = [time.perf_counter()]
        spec = parse(json.loads(body))
        stamps.append(time.perf_counter())
        run = coord.submit(admin, spec, watched=True)  # unsynced: the end's sync covers it
        stamps.append(time.perf_counter())
        (lease,) = coord.lease(link.worker_id, 1)
        stamps.append(time.perf_counter())
        result = pool.call(lease, {}, lambda chunk: None).run()
        stamps.append(time.perf_counter())
        value = result.value
        end = Report(
            lease.attempt_id, lease.token, "passed", 0, "", result.started_at, result=value
        )
        coord.report(link.worker_id, finished=[end])
        stamps.append(time.perf_counter())
        out = run_json(coord.store.runs.get(run.id))
        out["results"] = coord.job_results(run.id)
        answer(out, 201)
        stamps.append(time.perf_counter())
        if out["state"] != "passed" or out["results"][0][3] != i:
            raise RuntimeError(f"run {run.id} ended {out['state']}")
        if keep:
            names = ("parse", "submit", "lease", "task call", "end (synced)", "answer")
            for name, a, b in zip(names, stamps, stamps[1:], strict=False):
                took.setdefault(name, []).append((b - a) * 1000)

    for i in range(n + 100):
        one(i, keep=i >= 100)
    pool.close()
    # W1's single submit: the run is durable before its 201, so its commit is synced here
    submits = []
    for i in range(n + 100):
        spec = parse({"name": f"s{i}", "jobs": {"j": {"task": "noop", "args": {"x": i}}}})
        t0 = time.perf_counter()
        coord.submit(admin, spec)
        submits.append((time.perf_counter() - t0) * 1000)
    coord.store.close()
    http = floors.http_requests(0, n, home)["w2_p50_ms"]
    print("W2, one call (submit with wait, one task job), each step alone:")
    total = http
    print(f"  {'HTTP round trip, no work (p50)':32s} {http:.3f} ms")
    for name, values in took.items():
        median = statistics.median(values)
        total += median
        print(f"  {name:32s} {median:.3f} ms")
    print(f"  {'sum: the least a call costs here':32s} {total:.3f} ms")
    parse_ms, submit_ms = statistics.median(took["parse"]), statistics.median(submits[100:])
    single = http + parse_ms + submit_ms
    print("W1, one call each: a run's submit alone, before anything runs it:")
    print(f"  HTTP {http:.3f} + parse {parse_ms:.3f} + synced submit {submit_ms:.3f} ms")
    print(f"  = {single:.3f} ms: at most {1000 / single:,.0f} runs/s from one caller")


def leases(rounds: int, sites: tuple[int, ...] = (20, 200)) -> None:
    from corral.auth import Principal
    from corral.config import Settings
    from corral.domain.models import Report
    from corral.domain.runspec import parse
    from corral.fleet.hosts import HOST_SLOTS, FleetLeaser, FleetReporter, HostAgent, HostLink
    from corral.fleet.inventory import Host
    from corral.fleet.transport import Transport
    from corral.server import Server
    from corral.worker.agent import AgentOptions

    for n in sites:
        home = Path(tempfile.mkdtemp(prefix="corral-limits-"))
        server = Server(Settings(home=home, local_slots=0))
        coord = server.coordinator
        admin = Principal(token_id=0, kind="admin", name="limits")
        leaser, reporter = FleetLeaser(coord), FleetReporter(coord)
        ids = []
        for i in range(n):
            host = Host(site=f"h{i}", ssh="nobody@h")  # never connected: no job is sent
            link = HostLink(coord, host, Transport(host))
            agent = HostAgent(link, AgentOptions(slots=HOST_SLOTS), leaser, reporter)
            ids.append(agent.worker_id)
        cpu: dict[str, list[float]] = {"submit": [], "lease": [], "finish": []}
        count = max(rounds * 20 // n, 10)
        for r in range(count + count // 5):  # the first fifth warms up
            jobs = {f"h{i}": {"command": "true", "on": {"site": f"h{i}"}} for i in range(n)}
            spec = parse({"name": f"round-{r}", "jobs": jobs})
            c0 = _cpu()
            coord.submit(admin, spec, watched=True)
            c1 = _cpu()
            found = coord.lease_for([(w, HOST_SLOTS) for w in ids])
            c2 = _cpu()
            made = [x for got in found if isinstance(got, list) for x in got]
            if len(made) != n:
                raise RuntimeError(f"{n} sites leased {len(made)} jobs")
            ends = [Report(x.attempt_id, x.token, "passed", 0, "exit 0") for x in made]
            coord.report(ids, finished=ends)
            c3 = _cpu()
            if r >= count // 5:
                for name, took in (("submit", c1 - c0), ("lease", c2 - c1), ("finish", c3 - c2)):
                    cpu[name].append(took * 1000)
        shown = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in cpu.items())
        print(f"{n} sites: CPU ms a round (median of {len(cpu['lease'])}): {shown}")
        coord.store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__.split("\n")[0])
    ap.add_argument(
        "probe", choices=["local", "submits", "leases", "waits", "rounds", "cpu", "steps"]
    )
    ap.add_argument(
        "-n",
        type=int,
        default=0,
        help="jobs (local: 5000), submits (2000), calls (waits: 400) or rounds (leases: 250, "
        "rounds: 200, cpu: 100 a set)",
    )
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args(argv)
    if a.probe == "local":
        local(a.n or 5000, a.reps)
    elif a.probe == "leases":
        leases(a.n or 250)
    elif a.probe == "waits":
        waits(a.n or 400, a.reps)
    elif a.probe == "rounds":
        rounds(a.n or 200, a.reps)
    elif a.probe == "cpu":
        cpu(a.n or 100, a.reps)
    elif a.probe == "steps":
        steps(a.n or 1000)
    else:
        submits(a.n or 2000, a.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
