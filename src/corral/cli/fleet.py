"""Commands about workers: list them, drain or resume one."""

from __future__ import annotations

import json
from typing import Any

import click

from corral.cli.common import client_options, handle_errors, make_client
from corral.cli.render import out, state, workers_table


@click.command("workers")
@click.option("--json", "as_json", is_flag=True)
@client_options
@handle_errors
def workers_cmd(as_json: bool, **conn: Any) -> None:
    """Workers: name, state, labels, slots, busy slots, last seen."""
    found = make_client(**conn).workers()
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        out.print("no workers: start one with `corral worker --server URL --token JOIN_TOKEN`")
    else:
        out.print(workers_table(found))


@click.command("drain")
@click.argument("worker")
@click.option("--resume", is_flag=True, help="Hand it jobs again.")
@client_options
@handle_errors
def drain_cmd(worker: str, resume: bool, **conn: Any) -> None:
    """Stop handing new jobs to WORKER (its running jobs finish); --resume undoes it."""
    result = make_client(**conn).drain(worker, not resume)
    out.print(f"{result['name']}: ", state(result["state"]))
