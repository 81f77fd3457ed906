"""`corral hosts`: the fleet's sites with reachability; `corral hosts check` connects to each."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from corral.cli.common import EXIT_FAILED, client_options, handle_errors, make_client
from corral.cli.render import out

REACH_COLORS = {"connected": "green", "unreachable": "bold red", "not connected yet": "dim"}


def hosts_table(hosts: Sequence[Mapping[str, Any]], checked: bool = False) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    cols = ["SITE", "SSH", "ROLES", "REACHABILITY", "PYTHON", "LATENCY", "JOBS END BY"]
    for col in [*cols, "ERROR"] if any(h["error"] for h in hosts) else cols:
        table.add_column(col)
    for h in hosts:
        address = h["ssh"] + (f":{h['port']}" if h.get("port") else "")
        latency = f"{h['latency'] * 1000:.0f} ms" if h.get("latency") is not None else "-"
        row: list[str | Text] = [
            h["site"],
            address,
            ",".join(h["roles"]) or "-",
            Text(h["reachability"], style=REACH_COLORS.get(h["reachability"], "")),
            h.get("python") or "-",
            latency if checked or h["reachability"] == "connected" else "-",
            h.get("containment") or "-",
        ]
        if any(x["error"] for x in hosts):
            row.append(Text(h["error"], style="red"))
        table.add_row(*row)
    return table


@click.group("hosts", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@client_options
@click.pass_context
@handle_errors
def hosts_group(ctx: click.Context, /, as_json: bool, **conn: Any) -> None:
    """The fleet's sites from the server's inventory: address, roles, reachability."""
    if ctx.invoked_subcommand is not None:
        return
    found = make_client(**conn).hosts()
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        out.print("no hosts: list them as [hosts.NAME] in the server's configuration file")
    else:
        out.print(hosts_table(found))


@hosts_group.command("check")
@click.option("--json", "as_json", is_flag=True)
@client_options
@handle_errors
def check_cmd(as_json: bool, **conn: Any) -> None:
    """Connect to each host now: its Python version and the latency of a round trip."""
    found = make_client(**conn).hosts(check=True)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        out.print("no hosts: list them as [hosts.NAME] in the server's configuration file")
    else:
        out.print(hosts_table(found, checked=True))
    if any(h["reachability"] != "connected" for h in found):
        sys.exit(EXIT_FAILED)
