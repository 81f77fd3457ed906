"""Commands about objects: put a file in, get one out."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from corral.cli.common import client_options, handle_errors, make_client
from corral.cli.render import err, out
from corral.objects.names import parse_sha256

# a bar only for transfers long enough to watch, and only on a terminal
PROGRESS_FROM = 32 * 1024 * 1024


@contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    if total is None or total < PROGRESS_FROM or not err.is_terminal:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@click.command("put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--name", default=None, help="The name it goes by [default: the file's name].")
@client_options
@handle_errors
def put_cmd(file: str, name: str | None, **conn: Any) -> None:
    """Upload a file as an object; print its sha256 and size.

    \b
    corral put build.tar.gz
    corral put --project web data.csv
    """
    client = make_client(**conn)
    path = Path(file)
    with _progress(f"put {path.name}", path.stat().st_size) as progress:
        ref = client.put_file(path, name=name, progress=progress)
    out.print(f"sha256:{ref.sha256}  {ref.size} bytes")


@click.command("get")
@click.argument("sha")
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    help="Write to FILE [default: standard output].",
)
@client_options
@handle_errors
def get_cmd(sha: str, output: str | None, **conn: Any) -> None:
    """Download an object by its sha256 (a `sha256:` prefix is fine).

    \b
    corral get sha256:9f86d08… -o build.tar.gz
    corral get 9f86d08… | tar xz
    """
    sha = parse_sha256(sha, "SHA")
    client = make_client(**conn)
    if output is None:
        sink = sys.stdout.buffer
        for chunk in client.stream(sha):
            sink.write(chunk)
        sink.flush()
        return
    size = client.stat(sha).size if err.is_terminal else None  # for the bar only
    with _progress(f"get {Path(output).name}", size) as progress:
        ref = client.get_file(sha, output, progress=progress)
    err.print(f"{output}: {ref.size} bytes")
