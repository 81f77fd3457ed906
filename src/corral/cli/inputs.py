"""`corral submit --input NAME=PATH`: upload a file and bind it as the input NAME of the jobs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from corral.domain.dataflow import path_problem


def parse_inputs(given: Sequence[str]) -> dict[str, Path]:
    """`NAME=PATH` pairs; a bad one is a usage error naming it."""
    out: dict[str, Path] = {}
    for item in given:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=PATH, got {item!r}", param_hint="--input")
        problem = path_problem(name)
        if problem is not None:
            raise click.BadParameter(f"{name!r}: {problem}", param_hint="--input")
        if not Path(path).is_file():
            raise click.BadParameter(f"{name}={path}: no such file", param_hint="--input")
        out[name] = Path(path)
    return out


def jobs_taking(body: dict[str, Any], name: str) -> list[str]:
    """The jobs of a spec (JSON form) that list an input named `name`."""
    jobs = body.get("jobs") or {}
    return [j for j, job in jobs.items() if name in (job.get("inputs") or {})]


def unbound(body: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Names given with --input that no job of the spec lists among its inputs."""
    return [n for n in names if not jobs_taking(body, n)]


def bind(body: dict[str, Any], name: str, sha256: str) -> None:
    """Make the input `name` of every job that lists it the object `sha256`."""
    for job in jobs_taking(body, name):
        body["jobs"][job]["inputs"][name] = f"sha256:{sha256}"
