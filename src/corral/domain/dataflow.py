"""Dataflow in a run spec: a job's inputs (objects or other jobs' outputs), outputs and stdout."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SHA256_RE = re.compile(r"[0-9a-f]{64}")
STDOUTS = ("log", "object")
MAX_PATH = 1024
MAX_PART = 255
MAX_INPUTS = 1000
MAX_OUTPUTS = 1000
_GLOB_CHARS = set("*?[]")


@dataclass(frozen=True)
class Input:
    """One file placed read-only under the job's `inputs/` directory before it starts."""

    name: str  # its path under inputs/
    sha256: str | None = None  # an object uploaded before
    job: str | None = None  # or what another job of the run produced:
    output: str | None = None  # "stdout", or a path among that job's outputs

    def ref(self) -> str:
        """The reference as written in a spec."""
        return f"sha256:{self.sha256}" if self.sha256 else f"{self.job}:{self.output}"

    def to_json(self) -> dict[str, Any]:
        if self.sha256:
            return {"name": self.name, "sha256": self.sha256}
        return {"name": self.name, "job": self.job, "output": self.output}


def path_problem(path: object, *, glob: bool = False) -> str | None:
    """Why `path` is not a safe relative path (None if it is): no absolute paths, no `..`, no
    empty parts, no NUL or control characters; glob characters only where `glob` allows them."""
    if not isinstance(path, str) or not path:
        return "expected a relative path, not an empty one"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH:
        return f"a name may be at most {MAX_PATH} bytes long"
    bad = next((c for c in path if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        return f"a name may not contain control characters (found {bad!r})"
    if "\\" in path:
        return "a name may not contain a backslash"
    if path.startswith("/"):
        return "a name must be a relative path"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return "a name may not have empty, '.' or '..' parts"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_PART:
            return f"each part of a name may be at most {MAX_PART} bytes long"
    if not glob and _GLOB_CHARS & set(path):
        return "no glob characters (* ? [ ]) here"
    return None


def parse_sha256(value: str) -> str | None:
    """The hex digest of `sha256:<hex>` or `<hex>` (lowercase, 64 characters); None otherwise."""
    digest = value[len("sha256:") :] if value.startswith("sha256:") else value
    return digest if SHA256_RE.fullmatch(digest) else None


def parse_inputs(raw: object, add: Any, at: str) -> tuple[Input, ...]:
    """`inputs = { "name" = "sha256:…" | "job:stdout" | "job:path/in/its/outputs" }`.

    `add(path, message)` records a problem; references to other jobs are checked against the
    whole run by `check_references` once every job is parsed.
    """
    if not isinstance(raw, Mapping):
        add(at, 'expected a table of name = "sha256:…" or "job:output"')
        return ()
    if len(raw) > MAX_INPUTS:
        add(at, f"at most {MAX_INPUTS} inputs")
        return ()
    out: list[Input] = []
    for name, value in raw.items():
        where = f"{at}.{name}"
        problem = path_problem(name)
        if problem:
            add(where, f"bad input name: {problem}")
            continue
        if not isinstance(value, str):
            add(where, 'expected "sha256:<64 hex digits>" or "job:stdout" or "job:path"')
            continue
        if value.startswith("sha256:"):
            digest = parse_sha256(value)
            if digest is None:
                add(where, "expected sha256: and 64 lowercase hex digits")
                continue
            out.append(Input(name=str(name), sha256=digest))
            continue
        job, sep, output = value.partition(":")
        if not sep or not job or not output:
            add(where, 'expected "sha256:<64 hex digits>" or "job:stdout" or "job:path"')
            continue
        if output != "stdout":
            problem = path_problem(output)
            if problem:
                add(where, f"bad output path {output!r}: {problem}")
                continue
        out.append(Input(name=str(name), job=job, output=output))
    return tuple(out)


def parse_outputs(raw: object, add: Any, at: str) -> tuple[str, ...]:
    """`outputs = ["out/model.bin", "reports/*.html"]`: paths or globs in the working directory."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        add(at, "expected a list of paths or globs in the job's working directory")
        return ()
    if len(raw) > MAX_OUTPUTS:
        add(at, f"at most {MAX_OUTPUTS} outputs")
        return ()
    out: list[str] = []
    for i, value in enumerate(raw):
        problem = path_problem(value, glob=True)
        if problem:
            add(f"{at}[{i}]", f"bad output path {value!r}: {problem}")
            continue
        out.append(str(value))
    return tuple(dict.fromkeys(out))


def matches_output(path: str, patterns: Sequence[str]) -> bool:
    """Whether a file path is covered by a job's declared outputs (a `*` stays within a part)."""
    return any(_glob_re(p).match(path) for p in patterns)


def _glob_re(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


@dataclass(frozen=True)
class Producer:
    """What a job offers to others: its declared outputs, its stdout, whether it runs once."""

    outputs: tuple[str, ...]
    stdout: str
    once: bool


def check_references(
    job: str, inputs: Sequence[Input], producers: Mapping[str, Producer]
) -> list[tuple[str, str]]:
    """Problems with one job's inputs that name other jobs of the run."""
    problems: list[tuple[str, str]] = []
    for item in inputs:
        if item.job is None:
            continue
        where = f"jobs.{job}.inputs.{item.name}"
        producer = producers.get(item.job)
        if item.job == job:
            problems.append((where, "a job cannot take its own output as an input"))
        elif producer is None:
            problems.append((where, f"unknown job {item.job!r}"))
        elif not producer.once:
            problems.append(
                (where, f"job {item.job!r} runs once per worker (fanout = each): no single output")
            )
        elif item.output == "stdout" and producer.stdout != "object":
            problems.append(
                (where, f'job {item.job!r} keeps its stdout as a log: set stdout = "object" there')
            )
        elif item.output != "stdout" and not matches_output(item.output or "", producer.outputs):
            problems.append(
                (where, f"{item.output!r} is not among the outputs job {item.job!r} declares")
            )
    return problems
