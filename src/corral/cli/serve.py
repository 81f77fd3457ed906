"""`corral serve` (the coordinator, with a local worker) and `corral worker` (a worker elsewhere)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from corral import heap
from corral.cli.common import EXIT_ERROR
from corral.cli.render import error, out
from corral.config import Settings, corral_home, load
from corral.errors import ConfigError, CorralError
from corral.fleet.inventory import Inventory, load_inventory

if TYPE_CHECKING:
    from corral.worker.workdirs import WorkerRoot


@click.command("serve")
@click.option(
    "--config",
    "config_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Settings file [default: $CORRAL_HOME/corral.toml].",
)
@click.option("--home", default=None, help="Where corral keeps its state [default: ~/.corral].")
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", default=None, type=int, help="Port [default: 8765].")
@click.option("--db", default=None, help="Database URL (postgresql://…) [default: SQLite in home].")
@click.option(
    "--local-slots",
    default=None,
    type=int,
    help="Slots of the local worker [default: CPU count; 0 = none].",
)
@click.option(
    "--local-label", "local_labels", multiple=True, help="Extra label k=v for the local worker."
)
@click.option(
    "--lease-ttl", default=None, help='How long a lease lives without heartbeat [default: "30s"].'
)
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False))
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False))
@click.option(
    "--tasks",
    "tasks",
    multiple=True,
    type=click.Path(file_okay=False),
    help="A directory of task files with @corral.task functions (repeatable).",
)
@click.option(
    "--objects",
    default=None,
    help="Where objects go: a directory or s3://bucket[/prefix] [default: $CORRAL_HOME/objects].",
)
@click.option(
    "--log-limit", default=None, help='Log kept per attempt by the local worker [default: "16MiB"].'
)
@click.option("--demo", is_flag=True, default=None, help="Submit an example run at start.")
@click.option("--log-level", default=None, type=click.Choice(["debug", "info", "warning", "error"]))
def serve_cmd(config_file: str | None, **flags: Any) -> None:
    """Start the coordinator (API, dashboard) with a local worker."""
    import uvicorn

    from corral.http_writes import http_protocol
    from corral.secrets import load_secrets
    from corral.server import Server

    if flags.get("local_labels"):
        flags["local_labels"] = tuple(flags["local_labels"])
    else:
        flags.pop("local_labels")
    if flags.get("tasks"):
        flags["tasks"] = tuple(flags["tasks"])
    else:
        flags.pop("tasks")
    try:
        settings, inventory = _settings_and_inventory(flags, config_file)
        server = Server(
            settings, load_secrets(settings.home, config_file), inventory, settle_heap=True
        )
    except CorralError as exc:
        error(exc.message)
        sys.exit(EXIT_ERROR)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    scheme = "https" if settings.tls_cert else "http"
    url = f"{scheme}://{settings.host}:{settings.port}"
    out.print(
        f"corral serving on [bold]{url}[/] — store {_safe(settings.db_url)}, "
        f"local worker {settings.slots} slots, objects {server.objects.describe()}"
    )
    if settings.slots:
        out.print(f"local worker: {_containment()}")
    if server.new_admin_token:
        out.print(f"admin token written to {settings.token_file} (mode 0600)")
    if settings.tasks:
        names = [t.name for t in server.registry.tasks()]
        out.print(f"{len(names)} tasks: {', '.join(names[:20])}{' …' if len(names) > 20 else ''}")
    uvicorn.run(
        server.app,
        host=settings.host,
        port=settings.port,
        http=http_protocol(),
        log_level="warning" if settings.log_level == "info" else settings.log_level,
        ssl_certfile=settings.tls_cert or None,
        ssl_keyfile=settings.tls_key or None,
        timeout_graceful_shutdown=5,
        access_log=settings.log_level == "debug",
    )


def _settings_and_inventory(
    flags: dict[str, Any], config_file: str | None
) -> tuple[Settings, Inventory]:
    """Both read from the same file, and their problems reported together."""
    problems: list[str] = []
    settings = inventory = None
    try:
        settings = load(flags, config_file)
    except ConfigError as exc:
        problems += exc.problems
    home = Path(flags.get("home") or corral_home()).expanduser()
    try:
        inventory = load_inventory(Path(config_file) if config_file else home / "corral.toml")
    except ConfigError as exc:
        problems += [p for p in exc.problems if p not in problems]
    if problems or settings is None:
        raise ConfigError(problems)
    return settings, inventory or Inventory()


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.command("worker")
@click.option("--server", envvar="CORRAL_SERVER", required=True, help="Coordinator URL.")
@click.option(
    "--token",
    envvar="CORRAL_TOKEN",
    required=True,
    help="A join token (`corral token create --worker`).",
)
@click.option(
    "--ca",
    envvar="CORRAL_CA",
    default=None,
    type=click.Path(dir_okay=False),
    help="CA certificate to trust.",
)
@click.option("--name", default=None, help="Worker name [default: the host name].")
@click.option("--label", "labels", multiple=True, help="A label k=v (repeatable).")
@click.option("--slots", default=1, type=click.IntRange(1, 1024), help="Jobs at once.")
@click.option(
    "--allow", default="command", help="Kinds of job this worker runs (command,task,code)."
)
@click.option(
    "--workdir",
    default="",
    help="Where the worker keeps its attempts' directories, in corral-worker-NAME "
    "[default: system temp].",
)
@click.option(
    "--max-offline",
    default="0",
    help='Stop after this long without the coordinator ("10m"; 0 = never).',
)
@click.option(
    "--grace", default="5s", help="Between TERM and KILL when a job times out or is canceled."
)
@click.option(
    "--log-limit", default="16MiB", help="Log kept per attempt; more is cut with a marker."
)
@click.option(
    "--task-cache",
    default="",
    help="Where task sources are kept by hash [default: $CORRAL_HOME/task-sources].",
)
@click.option(
    "--run-as",
    default=None,
    help="Run jobs as this unprivileged user, not as the worker's account (needs root).",
)
def worker_cmd(
    server: str,
    token: str,
    ca: str | None,
    name: str | None,
    labels: tuple[str, ...],
    slots: int,
    allow: str,
    workdir: str,
    max_offline: str,
    grace: str,
    log_limit: str,
    task_cache: str,
    run_as: str | None,
) -> None:
    """Run jobs for a coordinator: pull leases, run them, report back.

    SIGTERM drains (no new jobs; running ones finish); a second SIGTERM kills them and gives
    their leases back at once. A job's processes end with it: its process group, and, where the
    worker may make cgroups (root, cgroup v1 or v2), every process it started; the worker says
    which at its start. CORRAL_CONTAINMENT=process-group keeps cgroups out (a job's setsid
    daemon then outlives it); cgroup-v1 or cgroup-v2 names one.
    """
    from corral.client import Http
    from corral.domain.durations import parse_duration
    from corral.domain.labels import LabelError, parse_labels
    from corral.domain.limits import parse_size
    from corral.domain.runspec import NAME_RE
    from corral.worker.agent import Agent, AgentOptions, default_name, on_signal
    from corral.worker.http_link import HttpLink

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        parsed = parse_labels(labels)
        offline = 0.0 if max_offline in ("0", "") else parse_duration(max_offline)
        grace_s = parse_duration(grace)
        log_bytes = parse_size(log_limit)
    except (LabelError, ValueError) as exc:
        error(str(exc))
        sys.exit(EXIT_ERROR)
    kinds = [k.strip() for k in allow.split(",") if k.strip()]
    name = name or default_name()
    if not NAME_RE.match(name):
        error(f"--name {name!r}: a worker name holds 1-64 letters, digits and _ . + -")
        sys.exit(EXIT_ERROR)
    try:
        # before the join: a worker that cannot start has changed nothing on the server
        root = _root(workdir, name, run_as)
    except OSError as exc:
        error(f"cannot make working directories in {workdir or tempfile.gettempdir()}: {exc}")
        sys.exit(EXIT_ERROR)
    except ValueError as exc:
        error(str(exc))
        sys.exit(EXIT_ERROR)
    try:
        confine = _confinement(kinds, root.path, run_as)
        link = HttpLink(
            Http(server, token, ca=ca),
            name,
            parsed,
            slots,
            kinds,
            retry_for=offline or 60.0,
            call_retry=min(5.0, offline / 4) if offline else 5.0,
        )
    except ValueError as exc:
        root.release()
        error(str(exc))
        sys.exit(EXIT_ERROR)
    except CorralError as exc:
        root.release()
        error(f"cannot join {server}: {exc.message}")
        sys.exit(EXIT_ERROR)
    agent = Agent(
        link,
        AgentOptions(
            slots=slots,
            workdir=root.path,
            max_offline=offline,
            grace=grace_s,
            log_limit=log_bytes,
            task_cache=task_cache,
            **confine,
        ),
    )
    handler = on_signal(agent, lambda m: out.print(f"[yellow]{m}[/]"))
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    out.print(
        f"worker [bold]{link.worker_name}[/] joined {server} with {slots} slots, "
        f"working in {root.path}"
    )
    out.print(_containment())
    heap.settle()  # joined and ready: its start-up heap is left out of collections
    try:
        agent.run()
    finally:
        link.close()
        root.release()
    if agent.error:
        error(agent.error)
        sys.exit(EXIT_ERROR)


def _containment() -> str:
    """What ends a job's processes here and what enforces its limits: said at the start, so
    that whoever runs the worker knows which protections hold on this machine."""
    from corral.worker import limits, tracking

    return f"{tracking.describe()}; limits: {limits.offer().describe()}"


def _root(workdir: str, name: str, run_as: str | None) -> WorkerRoot:
    """The worker's own directory for its attempts (`workdirs.worker_root`), cleared of what
    its dead process left; searchable by others when jobs run as another user. ValueError
    when a live worker of the same name holds it."""
    from corral.worker import workdirs

    base = workdir or tempfile.gettempdir()
    usual = workdirs.own_root(base, name)
    root = workdirs.worker_root(base, name, 0o711 if run_as else workdirs.MODE)
    if root.namesake:
        # its join would read as that worker's restart, and end the jobs it is running
        root.release()
        raise ValueError(
            f"a worker named {name} is running on this machine already (it holds {usual}): "
            "stop it first, or give this one another --name"
        )
    if root.spare:
        logging.getLogger("corral.worker").warning(
            "%s is not this worker's to use (another account made it, or it is a link): "
            "working in %s",
            usual,
            root.path,
        )
    return root


def _confinement(kinds: list[str], workdir: str, run_as: str | None) -> dict[str, Any]:
    """The agent options for --run-as and code jobs (working under `workdir`); ValueError when
    this machine cannot."""
    from corral.config import corral_home
    from corral.worker import runas, sandbox

    options: dict[str, Any] = {}
    user = None
    if run_as:
        user = runas.resolve(run_as)
        stuck = runas.unreachable(workdir)
        if stuck:
            raise ValueError(
                f"--run-as: {run_as!r} cannot reach working directories: {stuck} is not "
                "searchable by other users (choose --workdir elsewhere)"
            )
        options["run_as"] = user
    if "code" in kinds:
        bwrap = sandbox.find_bwrap()
        why = sandbox.check(bwrap, user)
        if why:
            raise ValueError(f"cannot run code jobs: {why}; or drop code from --allow")
        options["bwrap"] = bwrap
        options["hide"] = sandbox.hidden_paths(
            os.path.expanduser("~"),
            str(corral_home()),
            workdir,
        )
    return options
