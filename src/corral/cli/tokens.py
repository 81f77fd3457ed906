"""`corral token`: create, list and revoke tokens (admin)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from corral.cli.common import EXIT_ERROR, client_options, handle_errors, make_client
from corral.cli.render import ago, err, error, out


@click.group("token")
def token_group() -> None:
    """Create, list and revoke tokens (needs an admin token)."""


@token_group.command("create")
@click.option("--worker", "kind", flag_value="join", help="A join token for `corral worker`.")
@click.option("--admin", "kind", flag_value="admin", help="An admin token.")
@click.option(
    "--for-project",
    "for_project",
    default=None,
    metavar="P",
    help="A token for project P (submit and read; created if new).",
)
@click.option("--read-only", is_flag=True, help="With a project: read, never act.")
@click.option("--name", default="", help="A name to recognise it by.")
@click.option("--json", "as_json", is_flag=True)
@client_options
@handle_errors
def create_cmd(
    kind: str | None,
    for_project: str | None,
    read_only: bool,
    name: str,
    as_json: bool,
    **conn: Any,
) -> None:
    """Create a token; its secret is printed once and never shown again.

    \b
    corral token create --worker
    corral token create --for-project web [--read-only]
    """
    if for_project or (kind is None and conn.get("project")):
        project = for_project or conn.get("project")
        kind = "reader" if read_only else "submitter"
    else:
        project = None
        if read_only:
            error("--read-only goes with --for-project")
            sys.exit(EXIT_ERROR)
    if kind is None:
        error("say what the token is for: --worker, --admin or --for-project P")
        sys.exit(EXIT_ERROR)
    conn["project"] = None
    result = make_client(**conn).create_token(kind, project, name)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(result["token"])
    scope = f"{kind} of project {project}" if project else kind
    err.print(f"[dim]token {result['id']} ({scope}); keep it: it is not shown again[/]")


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@client_options
@handle_errors
def list_cmd(as_json: bool, **conn: Any) -> None:
    """Tokens (never their secrets)."""
    found = make_client(**conn).tokens()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("ID", "KIND", "PROJECT", "NAME", "CREATED", "REVOKED"):
        table.add_column(col)
    for t in found:
        table.add_row(
            str(t["id"]),
            t["kind"],
            t["project"] or "-",
            t["name"],
            ago(t["created_at"]),
            "yes" if t["revoked"] else "",
        )
    out.print(table)


@token_group.command("revoke")
@click.argument("token_id", type=int)
@client_options
@handle_errors
def revoke_cmd(token_id: int, **conn: Any) -> None:
    """Revoke a token (a worker's credential too: the worker must join again)."""
    make_client(**conn).revoke_token(token_id)
    out.print(f"token {token_id} revoked")
