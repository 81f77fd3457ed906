"""Commands about runs: run, submit, status, logs, cancel, rerun."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from corral.cli.common import EXIT_ERROR, EXIT_FAILED, client_options, handle_errors, make_client
from corral.cli.follow import stream_log, watch_run
from corral.cli.inputs import bind, parse_inputs, unbound
from corral.cli.render import error, isatty, jobs_table, out, runs_table, span, state
from corral.domain.labels import LabelError, parse_labels
from corral.domain.runspec import locate, parse_toml
from corral.errors import InvalidRunSpec


def _exit_for(run: dict[str, Any]) -> int:
    return 0 if run["state"] == "passed" else EXIT_FAILED


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=False, type=click.UNPROCESSED)
@click.option("--task", default=None, help="Run this registered task instead of a command.")
@click.option(
    "--args", "task_args", default=None, help="The task's arguments as JSON: '{\"n\": 3}'."
)
@click.option("--on", "selector", multiple=True, help="Labels the worker needs, k=v (repeatable).")
@click.option("--name", default=None, help="Run name [default: the command's first word].")
@click.option("--timeout", default=None, help='Wall-clock limit, like "20m".')
@click.option("--retries", default=0, type=int, help="Retries when the job fails.")
@click.option("--env", "envs", multiple=True, help="NAME=VALUE for the job (repeatable).")
@click.option("--detach", is_flag=True, help="Submit and print the run id; do not wait.")
@client_options
@handle_errors
def run_cmd(
    command: tuple[str, ...],
    task: str | None,
    task_args: str | None,
    selector: tuple[str, ...],
    name: str | None,
    timeout: str | None,
    retries: int,
    envs: tuple[str, ...],
    detach: bool,
    **conn: Any,
) -> None:
    """Run one shell command as a job; show its output live; exit with its exit code.

    \b
    corral run -- make test
    corral run --on platform=linux -- ./build.sh --release
    corral run --task wordcount --args '{"text": "a b c"}'   (prints the task's result)
    """
    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    job = _task_job(task, task_args, argv)
    if job is None:
        job = {"command": argv[0] if len(argv) == 1 else argv}
    try:
        if selector:
            job["on"] = parse_labels(selector)
    except LabelError as exc:
        error(f"--on: {exc}")
        sys.exit(EXIT_ERROR)
    if timeout:
        job["timeout"] = timeout
    if retries:
        job["retries"] = retries
    if envs:
        env = {}
        for item in envs:
            key, sep, value = item.partition("=")
            if not sep:
                error(f"--env: expected NAME=VALUE, got {item!r}")
                sys.exit(EXIT_ERROR)
            env[key] = value
        job["env"] = env
    run_name = name or task or Path(argv[0].split()[0]).name[:60] or "run"
    client = make_client(**conn)
    run = client.submit({"name": _safe_name(run_name), "jobs": {"job": job}})
    if detach:
        click.echo(run["id"])
        return
    stream_log(client, run["id"], "job", follow=True)
    final = client.wait(run["id"])
    job_view = client.job(run["id"], "job")
    if final["state"] != "passed":
        click.echo(
            f"corral: job {job_view['state']}: {job_view['reason'] or final['state']}", err=True
        )
    code = job_view.get("exit_code")
    if task and final["state"] == "passed":
        click.echo(json.dumps(job_view.get("result")))
    if final["state"] == "passed":
        sys.exit(0)
    sys.exit(code if isinstance(code, int) and 0 < code < 256 else EXIT_FAILED)


def _task_job(task: str | None, raw_args: str | None, argv: list[str]) -> dict[str, Any] | None:
    """The job for `--task` (None for a command); exits on a usage error."""
    if task is None:
        if raw_args is not None:
            error("--args goes with --task")
            sys.exit(EXIT_ERROR)
        if not argv:
            error("give a command (corral run -- CMD) or --task NAME")
            sys.exit(EXIT_ERROR)
        return None
    if argv:
        error("give a command or --task, not both")
        sys.exit(EXIT_ERROR)
    job: dict[str, Any] = {"task": task}
    if raw_args is not None:
        try:
            job["args"] = json.loads(raw_args)
        except json.JSONDecodeError as exc:
            error(f"--args: not JSON: {exc}")
            sys.exit(EXIT_ERROR)
    return job


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.:/@+-" else "-" for c in name).strip("-")
    return cleaned if cleaned and cleaned[0].isalnum() else f"run-{cleaned}".rstrip("-")


@click.command("submit")
@click.argument("spec", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--name", default=None, help="Override the run's name (e.g. a git revision).")
@click.option("--detach", is_flag=True, help="Submit and print the run id; do not wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the final run as JSON.")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=PATH",
    help="Upload PATH and make it the input NAME of every job that lists an input NAME.",
)
@client_options
@handle_errors
def submit_cmd(
    spec: str,
    name: str | None,
    detach: bool,
    as_json: bool,
    inputs: tuple[str, ...] = (),
    **conn: Any,
) -> None:
    """Submit a run from a TOML spec; show progress; exit non-zero if a job failed.

    `--input data.csv=PATH` uploads PATH and sets `inputs."data.csv"` of every job that
    declares an input named data.csv (declared with any reference, e.g. a previous upload)."""
    files = parse_inputs(inputs)
    text = sys.stdin.read() if spec == "-" else _read(spec)
    try:
        parsed = parse_toml(text)
    except InvalidRunSpec as exc:
        for field, message in exc.problems:
            line = locate(text, field) if field else None
            where = f"{spec}:{line}" if line else spec
            error(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        sys.exit(EXIT_ERROR)
    body = parsed.to_dict()
    if name:
        body["name"] = name
    for missing in unbound(body, list(files)):
        error(f"--input {missing}: no job of {spec} lists an input named {missing!r}")
        sys.exit(EXIT_ERROR)
    client = make_client(**conn)
    if files and body.get("project") and not client.project:
        client.project = str(body["project"])  # the run's project must hold its inputs
    for input_name, path in files.items():
        bind(body, input_name, client.put_file(path).sha256)
    try:
        run = client.submit(body)
    except InvalidRunSpec as exc:
        for field, message in exc.problems:
            line = locate(text, field) if field else None
            where = f"{spec}:{line}: " if line else f"{spec}: "
            error(f"{where}{field}: {message}" if field else where + message)
        sys.exit(EXIT_ERROR)
    if detach:
        click.echo(run["id"])
        return
    if not as_json:
        out.print(
            f"run [bold]{run['id']}[/] [dim]({run['name']})[/] submitted with {sum(run['counts'].values())} jobs"
        )
    final = watch_run(client, run["id"], live=isatty() and not as_json)
    final = client.run(run["id"])
    if as_json:
        click.echo(json.dumps(final, indent=2))
    else:
        if not isatty():
            out.print(jobs_table(final["jobs"]))
        out.print(
            "run ",
            final["id"],
            " ",
            state(final["state"]),
            f" in {span(final.get('started_at'), final.get('ended_at'))}",
        )
    sys.exit(_exit_for(final))


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        error(f"{path}: {exc.strerror or exc}")
        sys.exit(EXIT_ERROR)


@click.command("status")
@click.argument("run", required=False)
@click.option("--state", "state_filter", default=None, help="Only runs in this state.")
@click.option("--name", default=None, help="Only runs of this name.")
@click.option("--limit", default=20, type=int)
@click.option("--json", "as_json", is_flag=True)
@client_options
@handle_errors
def status_cmd(
    run: str | None,
    state_filter: str | None,
    name: str | None,
    limit: int,
    as_json: bool,
    **conn: Any,
) -> None:
    """Runs, newest first; or one run's jobs, with why a queued job is waiting."""
    client = make_client(**conn)
    if run is None:
        runs = client.runs(state=state_filter, name=name, limit=limit)
        if as_json:
            click.echo(json.dumps(runs, indent=2))
        elif not runs:
            out.print("no runs yet: try `corral run -- echo hello`")
        else:
            out.print(runs_table(runs))
        return
    found = client.run(run)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    out.print(
        f"run [bold]{found['id']}[/] {found['name']} ",
        state(found["state"]),
        f" [dim]project {found['project']}, by {found['submitted_by']}, "
        f"{span(found.get('started_at'), found.get('ended_at'))}[/]",
    )
    out.print(jobs_table(found["jobs"]))


def _split_ref(ref: str) -> tuple[str, str | None]:
    run, sep, job = ref.partition("/")
    return run, (job if sep else None)


@click.command("logs")
@click.argument("ref", metavar="RUN/JOB")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@click.option("--attempt", type=int, default=None, help="Attempt number [default: the latest].")
@client_options
@handle_errors
def logs_cmd(ref: str, follow: bool, attempt: int | None, **conn: Any) -> None:
    """Print a job's log (stdout to stdout, stderr to stderr), or follow it live."""
    run, job = _split_ref(ref)
    client = make_client(**conn)
    if job is None:
        found = client.run(run)
        if len(found["jobs"]) != 1:
            labels = ", ".join(j["label"] for j in found["jobs"][:10])
            error(f"name a job: {run}/JOB, one of {labels}")
            sys.exit(EXIT_ERROR)
        job = found["jobs"][0]["label"]
    assert job is not None
    stream_log(client, run, job, follow=follow, attempt=attempt)


@click.command("cancel")
@click.argument("ref", metavar="RUN[/JOB]")
@client_options
@handle_errors
def cancel_cmd(ref: str, **conn: Any) -> None:
    """Cancel a run's unfinished jobs, or one job; running processes are stopped."""
    run, job = _split_ref(ref)
    client = make_client(**conn)
    result = client.cancel(run, job)
    out.print(f"{ref}: ", state(result["state"]))


@click.command("rerun")
@click.argument("run")
@click.option("--failed", is_flag=True, help="Only the failed jobs (and what needs them).")
@click.option("--follow/--no-follow", default=False, help="Watch the run until it ends.")
@client_options
@handle_errors
def rerun_cmd(run: str, failed: bool, follow: bool, **conn: Any) -> None:
    """Run a run's jobs again (all, or the failed ones with everything downstream)."""
    client = make_client(**conn)
    result = client.rerun(run, failed)
    out.print(f"run {result['id']} ({result['name']}): ", state(result["state"]))
    if follow:
        final = watch_run(client, result["id"], live=isatty())
        sys.exit(_exit_for(final))
