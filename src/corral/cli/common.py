"""What client commands share: the connection options and turning errors into exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from corral.cli.render import error
from corral.client import Client
from corral.errors import CorralError, InvalidRunSpec

F = TypeVar("F", bound=Callable[..., Any])

# exit codes: 0 all passed; 1 a job failed; 2 corral refused or could not do what was asked
EXIT_FAILED = 1
EXIT_ERROR = 2


def client_options(fn: F) -> F:
    """--server/--token/--ca/--project on every command that talks to a coordinator."""
    decorators = [
        click.option(
            "--server",
            envvar="CORRAL_SERVER",
            help="Coordinator URL [default: http://127.0.0.1:8765].",
        ),
        click.option("--token", envvar="CORRAL_TOKEN", help="Token [default: $CORRAL_HOME/token]."),
        click.option(
            "--ca",
            envvar="CORRAL_CA",
            type=click.Path(dir_okay=False),
            help="CA certificate to trust.",
        ),
        click.option("--project", envvar="CORRAL_PROJECT", help="Project [default: default]."),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


def make_client(
    server: str | None, token: str | None, ca: str | None, project: str | None
) -> Client:
    return Client(server, token, ca=ca, project=project)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidRunSpec as exc:
            for field, message in exc.problems:
                error(f"{field}: {message}" if field else message)
            sys.exit(EXIT_ERROR)
        except CorralError as exc:
            error(exc.message)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]
