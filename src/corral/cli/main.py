"""The `corral` command."""

from __future__ import annotations

import click

from corral.cli.exec import exec_cmd
from corral.cli.fleet import drain_cmd, workers_cmd
from corral.cli.hosts import hosts_group
from corral.cli.objects import get_cmd, put_cmd
from corral.cli.runs import cancel_cmd, logs_cmd, rerun_cmd, run_cmd, status_cmd, submit_cmd
from corral.cli.serve import serve_cmd, worker_cmd
from corral.cli.tokens import token_group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="corral")
def cli() -> None:
    """corral runs jobs on a fleet of machines and keeps track of every one."""


for command in (
    serve_cmd,
    worker_cmd,
    run_cmd,
    submit_cmd,
    status_cmd,
    logs_cmd,
    cancel_cmd,
    rerun_cmd,
    workers_cmd,
    drain_cmd,
    token_group,
    put_cmd,
    get_cmd,
    hosts_group,
    exec_cmd,
):
    cli.add_command(command)


def main() -> None:
    cli()
