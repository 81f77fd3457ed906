"""`corral exec`: one command on many hosts, live output prefixed by host, a summary at the end."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, TextIO

import click
from rich.live import Live
from rich.table import Table
from rich.text import Text

from corral.cli.common import EXIT_ERROR, EXIT_FAILED, client_options, handle_errors, make_client
from corral.cli.follow import ENDED as RUN_ENDED
from corral.cli.render import error, isatty, out, span, state
from corral.client import Client
from corral.domain.labels import LabelError, matches, parse_labels
from corral.handles import JOB_ENDED


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--on", "selector", multiple=True, help="Hosts with these labels, k=v (role=app).")
@click.option("--hosts", "sites", default=None, help="These sites, comma-separated.")
@click.option("--sequential", is_flag=True, help="One host after the other, stopping at a failure.")
@click.option("--per-host", is_flag=True, help="Hosts in parallel, one job at a time on each.")
@click.option(
    "--exclusive", is_flag=True, help="Keep other runs' jobs off these hosts until this ends."
)
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    default=None,
    help="At most N hosts at once (a rolling deploy: --max-parallel 1).",
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=1),
    default=None,
    help="Once N hosts failed, start no more (the rest end canceled).",
)
@click.option(
    "--sudo", "sudo", default=None, help="The server's secret holding the password sudo asks for."
)
@click.option("--timeout", default=None, help='Wall-clock limit on each host, like "5m".')
@click.option("--env", "envs", multiple=True, help="NAME=VALUE for the command (repeatable).")
@click.option("--name", default=None, help="Run name [default: exec].")
@client_options
@handle_errors
def exec_cmd(
    command: tuple[str, ...],
    selector: tuple[str, ...],
    sites: str | None,
    sequential: bool,
    per_host: bool,
    exclusive: bool,
    max_parallel: int | None,
    max_failures: int | None,
    sudo: str | None,
    timeout: str | None,
    envs: tuple[str, ...],
    name: str | None,
    **conn: Any,
) -> None:
    """Run a command on every matching host; output lines prefixed by host; exit 1 if one failed.

    \b
    corral exec --on role=app -- uptime
    corral exec --hosts web1,web2 --sequential -- systemctl restart app
    corral exec --on role=app --max-parallel 1 --max-failures 1 -- ./deploy.sh
    """
    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        _refuse("give the command to run after --")
    try:
        labels = parse_labels(selector)
    except LabelError as exc:
        _refuse(f"--on: {exc}")
    if sum((sequential, per_host, exclusive)) > 1:
        _refuse("choose one of --sequential, --per-host and --exclusive")
    chosen = [s.strip() for s in (sites or "").split(",") if s.strip()]
    if not labels and not chosen:
        _refuse("say where to run it: --on role=NAME (labels) or --hosts SITE,SITE")
    job: dict[str, Any] = {"command": argv[0] if len(argv) == 1 else argv, "fanout": "each"}
    if timeout:
        job["timeout"] = timeout
    if sudo:
        job["sudo"] = sudo
    if envs:
        env: dict[str, str] = {}
        for item in envs:
            key, sep, value = item.partition("=")
            if not sep:
                _refuse(f"--env: expected NAME=VALUE, got {item!r}")
            env[key] = value
        job["env"] = env
    client = make_client(**conn)
    if sequential and not chosen:
        # an order needs the hosts named: the ones of the inventory that match, by site name
        chosen = [h["site"] for h in client.hosts() if matches(labels, _host_labels(h))]
        if not chosen:
            _refuse(f"no host of the inventory matches {','.join(selector)}")
    jobs: dict[str, Any] = {}
    if chosen:
        # one job per site, named by it: the order of --hosts is the order of a sequential run
        for site in dict.fromkeys(chosen):
            jobs[site] = {**job, "on": {**labels, "site": site}}
    else:
        jobs["exec"] = {**job, "on": labels}
    spec: dict[str, Any] = {
        "name": name or "exec",
        "schedule": (
            "sequential"
            if sequential
            else "per-host"
            if per_host
            else "exclusive"
            if exclusive
            else "parallel"
        ),
        "jobs": jobs,
    }
    if max_parallel is not None:
        spec["max_parallel"] = max_parallel
    if max_failures is not None:
        spec["max_failures"] = max_failures
    run = client.submit(spec)
    click.echo(f"corral: run {run['id']} on {_where(labels, chosen)}", err=True)
    views = client.run(run["id"])["jobs"]
    width = max(len(_host(j)) for j in views)
    printer = Printer(width)
    # one client for all: its small requests keep a connection per thread anyway
    threads = [
        threading.Thread(target=_follow, args=(client, run["id"], j, printer), daemon=True)
        for j in views
    ]
    for t in threads:
        t.start()
    final = _wait(client, run["id"], live=isatty())
    for t in threads:
        t.join(30.0)
    views = client.run(run["id"])["jobs"]
    out.print(summary_table(views))
    sys.exit(0 if final["state"] == "passed" else EXIT_FAILED)


def _wait(client: Client, run_id: int, *, live: bool) -> dict[str, Any]:
    """Wait for the run's end; on a terminal, with a status line under the hosts' output."""
    if not live:
        return client.wait(run_id)
    started = time.monotonic()
    # the hosts' lines go above the status line; stderr is taken along only when it is the
    # terminal too (else it is a file of its own, and stays one)
    with Live(
        console=out,
        refresh_per_second=4,
        transient=True,
        redirect_stdout=True,
        redirect_stderr=sys.stderr.isatty(),
    ) as view:
        while True:
            run = client.run(run_id)
            view.update(Text(status_line(run["jobs"], time.monotonic() - started), "dim"))
            if run["state"] in RUN_ENDED:
                return run
            client.wait(run_id, timeout=1.0)


def status_line(jobs: Sequence[Mapping[str, Any]], elapsed: float) -> str:
    """Where the hosts stand: "7/20 hosts done (1 failed), 12 running, 1 waiting, 3.2s"."""
    done = sum(1 for j in jobs if j["state"] in JOB_ENDED)
    bad = sum(1 for j in jobs if j["state"] in ("failed", "timed_out", "lost"))
    running = sum(1 for j in jobs if j["state"] in ("leased", "running"))
    parts = [f"{done}/{len(jobs)} hosts done" + (f" ({bad} failed)" if bad else "")]
    if running:
        parts.append(f"{running} running")
    if waiting := len(jobs) - done - running:
        parts.append(f"{waiting} waiting")
    parts.append(f"{elapsed:.1f}s")
    return ", ".join(parts)


def _refuse(message: str) -> NoReturn:
    error(message)
    sys.exit(EXIT_ERROR)


def _where(labels: Mapping[str, str], chosen: Sequence[str]) -> str:
    if chosen:
        return ", ".join(chosen)
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _host_labels(host: Mapping[str, Any]) -> dict[str, str]:
    labels = {"site": str(host["site"])}
    if host["roles"]:
        labels["role"] = ",".join(host["roles"])
    return labels


def _host(job: Mapping[str, Any]) -> str:
    return str(job.get("instance") or job.get("worker") or job["name"])


class Printer:
    """Whole lines only, each with its host in front, so hosts never interleave mid-line."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._lock = threading.Lock()

    def lines(self, host: str, text: str, target: TextIO) -> None:
        prefix = f"{host:<{self.width}} | "
        with self._lock:
            target.write("".join(prefix + line + "\n" for line in text.split("\n")))
            target.flush()


def _follow(client: Client, run_id: int, job: Mapping[str, Any], printer: Printer) -> None:
    """Print one host's output as it comes, holding back a line until its end arrives."""
    label, host = str(job["label"]), _host(job)
    partial = {"stdout": "", "stderr": ""}
    current: int | None = None
    after = -1
    try:
        while True:
            answer = client.log(run_id, label, attempt=current, after=after, wait=10.0)
            for chunk in answer["chunks"]:
                stream = "stderr" if chunk["stream"] == "stderr" else "stdout"
                text = partial[stream] + chunk["data"]
                whole, _, partial[stream] = text.rpartition("\n")
                if _:
                    printer.lines(host, whole, sys.stderr if stream == "stderr" else sys.stdout)
            after = answer["next"]
            att = answer.get("attempt")
            if current is None and att is not None:
                current = att["number"]
            if answer["chunks"] and not answer["ended"]:
                continue
            if answer["ended"] or answer.get("attempt") is None:
                view = client.job(run_id, label)
                if view["state"] in JOB_ENDED:
                    break
                latest = view["attempt_list"][-1]["number"] if view["attempt_list"] else None
                if latest is not None and latest != current:
                    current, after = latest, -1
                    continue
                if answer.get("attempt") is None:
                    threading.Event().wait(0.2)
    finally:
        for stream, rest in partial.items():
            if rest:
                printer.lines(host, rest, sys.stderr if stream == "stderr" else sys.stdout)


def summary_table(jobs: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("HOST", "STATE", "EXIT", "DURATION", "REASON"):
        table.add_column(col)
    for j in sorted(jobs, key=_host):
        exit_code = j.get("exit_code")
        table.add_row(
            _host(j),
            state(j["state"]),
            "-" if exit_code is None else str(exit_code),
            span(j.get("started_at"), j.get("ended_at")) if j.get("started_at") else "-",
            j.get("reason") or "",
        )
    return table
