"""Run specs: parse a TOML file or a JSON body into a validated RunSpec, naming every bad field."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.domain.dataflow import (
    STDOUTS,
    Input,
    Producer,
    check_references,
    parse_inputs,
    parse_outputs,
)
from corral.domain.durations import parse_duration
from corral.domain.labels import LabelError, check_labels
from corral.domain.limits import parse_limits
from corral.errors import InvalidRunSpec

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,127}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

SCHEDULES = ("parallel", "sequential", "per-host", "exclusive")
WHENS = ("success", "failure", "always")
FANOUTS = ("one", "each")
KINDS = ("command", "task", "code")
MAX_JOBS = 10_000
MAX_RETRIES = 100
MAX_COMMAND = 64 * 1024

_RUN_KEYS = {"name", "project", "schedule", "params", "jobs", "max_parallel", "max_failures"}
_JOB_KEYS = {
    "command",
    "task",
    "args",
    "code",
    "env",
    "on",
    "fanout",
    "needs",
    "when",
    "timeout",
    "retries",
    "inputs",
    "outputs",
    "stdout",
    "limits",
    "secrets",
    "network",
    "sudo",
}
MAX_SECRETS = 64
MAX_RUN_LIMIT = 1_000_000


@dataclass(frozen=True)
class JobSpec:
    name: str
    kind: str  # command | task | code
    command: str | None = None  # a shell string
    argv: tuple[str, ...] | None = None  # or an argv list
    task: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    code: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    selector: Mapping[str, str] = field(default_factory=dict)
    fanout: str = "one"
    needs: tuple[str, ...] = ()
    when: str = "success"
    timeout: float | None = None
    retries: int = 0
    inputs: tuple[Input, ...] = ()
    outputs: tuple[str, ...] = ()
    stdout: str = "log"  # or "object": stdout is also kept as an object others may take
    # which of `on` and `retries` the spec set itself (a task's defaults fill in the others)
    given: frozenset[str] = field(default=frozenset(), compare=False)
    limits: Mapping[str, float] = field(default_factory=dict)  # see domain/limits.py
    secrets: tuple[str, ...] = ()  # names; the server holds the values
    network: bool = False  # code jobs only: a sandbox with the host's network
    sudo: str | None = None  # command jobs: the secret holding the password sudo asks for

    def payload(self) -> dict[str, Any]:
        """What a worker needs to run the job (stored with the job, sent with its lease)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.command is not None:
            out["command"] = self.command
        if self.argv is not None:
            out["argv"] = list(self.argv)
        if self.task is not None:
            out["task"] = self.task
            out["args"] = dict(self.args)
        if self.code is not None:
            out["code"] = self.code
        if self.env:
            out["env"] = dict(self.env)
        if self.inputs:
            out["inputs"] = [i.to_json() for i in self.inputs]
        if self.outputs:
            out["outputs"] = list(self.outputs)
        if self.stdout != "log":
            out["stdout"] = self.stdout
        if self.limits:
            out["limits"] = dict(self.limits)
        if self.secrets:
            out["secrets"] = list(self.secrets)
        if self.network:
            out["network"] = True
        if self.sudo is not None:
            out["sudo"] = self.sudo
        return out


@dataclass(frozen=True)
class RunSpec:
    name: str
    jobs: tuple[JobSpec, ...]
    schedule: str = "parallel"
    project: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    max_parallel: int | None = None  # at most this many jobs leased or running at once
    max_failures: int | None = None  # this many failed jobs cancel the jobs still waiting

    def job(self, name: str) -> JobSpec:
        return next(j for j in self.jobs if j.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The spec in its JSON form (what the API takes); parse(to_dict(s)) == s."""
        jobs: dict[str, Any] = {}
        for j in self.jobs:
            d: dict[str, Any] = {}
            if j.command is not None:
                d["command"] = j.command
            if j.argv is not None:
                d["command"] = list(j.argv)
            if j.task is not None:
                d["task"] = j.task
                if j.args:
                    d["args"] = dict(j.args)
            if j.code is not None:
                d["code"] = j.code
            if j.env:
                d["env"] = dict(j.env)
            if j.selector or "on" in j.given:
                d["on"] = dict(j.selector)
            if j.fanout != "one":
                d["fanout"] = j.fanout
            if j.needs:
                d["needs"] = list(j.needs)
            if j.when != "success":
                d["when"] = j.when
            if j.timeout is not None:
                d["timeout"] = j.timeout
            if j.retries or "retries" in j.given:
                d["retries"] = j.retries
            if j.inputs:
                d["inputs"] = {i.name: i.ref() for i in j.inputs}
            if j.outputs:
                d["outputs"] = list(j.outputs)
            if j.stdout != "log":
                d["stdout"] = j.stdout
            if j.limits:
                d["limits"] = dict(j.limits)
            if j.secrets:
                d["secrets"] = list(j.secrets)
            if j.network:
                d["network"] = True
            if j.sudo is not None:
                d["sudo"] = j.sudo
            jobs[j.name] = d
        out: dict[str, Any] = {"name": self.name, "schedule": self.schedule, "jobs": jobs}
        if self.project:
            out["project"] = self.project
        if self.params:
            out["params"] = dict(self.params)
        if self.max_parallel is not None:
            out["max_parallel"] = self.max_parallel
        if self.max_failures is not None:
            out["max_failures"] = self.max_failures
        return out


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))


def parse_toml(text: str) -> RunSpec:
    """Parse a TOML run spec; syntax errors keep tomllib's line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRunSpec([("", f"not valid TOML: {exc}")]) from None
    return parse(data)


def parse(data: object) -> RunSpec:
    """Validate a decoded spec (JSON or TOML); InvalidRunSpec lists every problem with its path."""
    p = _Problems()
    if not isinstance(data, Mapping):
        raise InvalidRunSpec([("", f"expected an object with 'jobs', not {_kind(data)}")])
    for key in data:
        if key not in _RUN_KEYS:
            p.add(str(key), f"unknown field (expected one of {', '.join(sorted(_RUN_KEYS))})")

    name = data.get("name", "run")
    if not isinstance(name, str) or not RUN_NAME_RE.match(name):
        p.add("name", "expected 1-128 characters: letters, digits and _ . : / @ + - (not first)")
        name = "run"
    project = data.get("project")
    if project is not None and (not isinstance(project, str) or not NAME_RE.match(project)):
        p.add("project", "expected a project name: letters, digits and _ . + -")
        project = None
    schedule = data.get("schedule", "parallel")
    if schedule not in SCHEDULES:
        p.add("schedule", f"expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
        schedule = "parallel"
    params = data.get("params", {})
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        p.add("params", f"expected a table of parameters, not {_kind(params)}")
        params = {}
    limits = {key: _run_limit(p, data, key) for key in ("max_parallel", "max_failures")}

    jobs_raw = data.get("jobs")
    jobs: list[JobSpec] = []
    if jobs_raw is None:
        p.add("jobs", "a run needs at least one job")
    elif not isinstance(jobs_raw, Mapping):
        p.add("jobs", f"expected a table of jobs by name, not {_kind(jobs_raw)}")
    elif not jobs_raw:
        p.add("jobs", "a run needs at least one job")
    elif len(jobs_raw) > MAX_JOBS:
        p.add("jobs", f"at most {MAX_JOBS} jobs in one run, got {len(jobs_raw)}")
    else:
        for jname, jraw in jobs_raw.items():
            job = _parse_job(p, str(jname), jraw)
            if job is not None:
                jobs.append(job)

    if not p.items:
        producers = {j.name: Producer(j.outputs, j.stdout, j.fanout == "one") for j in jobs}
        for j in jobs:
            for path, message in check_references(j.name, j.inputs, producers):
                p.add(path, message)
    if not p.items:
        from corral.scheduler.graph import check_graph  # the graph rules live in scheduler/

        for path, message in check_graph(jobs, str(schedule)):
            p.add(path, message)
    if p.items:
        raise InvalidRunSpec(p.items)
    return RunSpec(
        name=name,
        jobs=tuple(jobs),
        schedule=schedule,
        project=project,
        params=dict(params),
        max_parallel=limits["max_parallel"],
        max_failures=limits["max_failures"],
    )


def _run_limit(p: _Problems, data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RUN_LIMIT:
        p.add(key, f"expected a whole number from 1 to {MAX_RUN_LIMIT}, got {value!r}")
        return None
    return value


def _parse_job(p: _Problems, name: str, raw: object) -> JobSpec | None:
    at = f"jobs.{name}"
    before = len(p.items)
    if not NAME_RE.match(name):
        p.add(at, "a job name holds 1-64 letters, digits and _ . + - (not first)")
    if not isinstance(raw, Mapping):
        p.add(at, f"expected a table, not {_kind(raw)}")
        return None
    for key in raw:
        if key not in _JOB_KEYS:
            p.add(f"{at}.{key}", f"unknown field (expected one of {', '.join(sorted(_JOB_KEYS))})")

    given = [k for k in KINDS if k in raw]
    if len(given) != 1:
        p.add(at, "needs exactly one of command, task or code")
        return None
    kind = given[0]
    command: str | None = None
    argv: tuple[str, ...] | None = None
    task: str | None = None
    code: str | None = None
    args: dict[str, Any] = {}
    if kind == "command":
        value = raw["command"]
        if isinstance(value, str) and value.strip():
            command = value
            if len(value) > MAX_COMMAND or "\x00" in value:
                p.add(f"{at}.command", f"at most {MAX_COMMAND} bytes and no NUL characters")
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(a, str) and "\x00" not in a for a in value)
        ):
            argv = tuple(value)
        else:
            p.add(f"{at}.command", "expected a non-empty shell string or a list of strings")
    elif kind == "task":
        value = raw["task"]
        if not isinstance(value, str) or not NAME_RE.match(value):
            p.add(f"{at}.task", "expected a task name")
        else:
            task = value
        a = raw.get("args", {})
        if not isinstance(a, Mapping) or not all(isinstance(k, str) for k in a):
            p.add(f"{at}.args", f"expected a table of arguments, not {_kind(a)}")
        elif not _is_json(a):
            p.add(f"{at}.args", "expected JSON values (strings, numbers, booleans, lists, tables)")
        else:
            args = dict(a)
    else:
        value = raw["code"]
        if not isinstance(value, str) or not value.strip():
            p.add(f"{at}.code", "expected Python source as a string")
        elif len(value) > MAX_COMMAND or "\x00" in value:
            # it travels as one argument of the sandboxed interpreter
            p.add(f"{at}.code", f"at most {MAX_COMMAND} bytes and no NUL characters")
        else:
            code = value
    if "args" in raw and kind != "task":
        p.add(f"{at}.args", "args go with task jobs only")

    env: dict[str, str] = {}
    env_raw = raw.get("env", {})
    if not isinstance(env_raw, Mapping):
        p.add(f"{at}.env", f'expected a table of NAME = "value", not {_kind(env_raw)}')
    else:
        for k, v in env_raw.items():
            if not isinstance(k, str) or not ENV_KEY_RE.match(k):
                p.add(f"{at}.env.{k}", "an environment variable name holds letters, digits, _")
            elif not isinstance(v, str) or "\x00" in v:
                p.add(f"{at}.env.{k}", f"expected a string value, not {_kind(v)}")
            else:
                env[k] = v

    selector: dict[str, str] = {}
    if "on" in raw:
        try:
            selector = check_labels(raw["on"])
        except LabelError as exc:
            p.add(f"{at}.on", str(exc))

    fanout = raw.get("fanout", "one")
    if fanout not in FANOUTS:
        p.add(f"{at}.fanout", f"expected one of {', '.join(FANOUTS)}, got {fanout!r}")
    when = raw.get("when", "success")
    if when not in WHENS:
        p.add(f"{at}.when", f"expected one of {', '.join(WHENS)}, got {when!r}")

    needs: tuple[str, ...] = ()
    needs_raw = raw.get("needs", [])
    if isinstance(needs_raw, str):
        needs_raw = [needs_raw]
    if not isinstance(needs_raw, list) or not all(isinstance(n, str) for n in needs_raw):
        p.add(f"{at}.needs", "expected a list of job names")
    else:
        needs = tuple(dict.fromkeys(needs_raw))

    inputs = parse_inputs(raw.get("inputs", {}), p.add, f"{at}.inputs")
    # a job waits for the jobs whose outputs it takes, as if it named them in `needs`
    needs = tuple(dict.fromkeys([*needs, *(i.job for i in inputs if i.job and i.job != name)]))
    outputs = parse_outputs(raw.get("outputs", []), p.add, f"{at}.outputs")
    stdout = raw.get("stdout", "log")
    if stdout not in STDOUTS:
        p.add(f"{at}.stdout", f"expected one of {', '.join(STDOUTS)}, got {stdout!r}")

    timeout: float | None = None
    if "timeout" in raw:
        try:
            timeout = parse_duration(raw["timeout"])
        except ValueError as exc:
            p.add(f"{at}.timeout", str(exc))
    retries = raw.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        p.add(f"{at}.retries", f"expected a whole number from 0 to {MAX_RETRIES}, got {retries!r}")
        retries = 0

    limits: dict[str, float] = {}
    if "limits" in raw:
        limits, bad = parse_limits(raw["limits"])
        for key, message in bad:
            p.add(f"{at}.limits" + (f".{key}" if key else ""), message)
    secret_names: tuple[str, ...] = ()
    secrets_raw = raw.get("secrets", [])
    if (
        not isinstance(secrets_raw, list)
        or len(secrets_raw) > MAX_SECRETS
        or not all(isinstance(n, str) and ENV_KEY_RE.match(n) for n in secrets_raw)
    ):
        p.add(
            f"{at}.secrets",
            f"expected a list of at most {MAX_SECRETS} secret names (letters, digits, _)",
        )
    else:
        secret_names = tuple(dict.fromkeys(secrets_raw))
        clash = sorted(set(secret_names) & set(env))
        if clash:
            p.add(f"{at}.secrets", f"also set in env: {', '.join(clash)}")
    network = raw.get("network", False)
    if not isinstance(network, bool):
        p.add(f"{at}.network", f"expected true or false, got {network!r}")
        network = False
    elif network and kind != "code":
        p.add(f"{at}.network", "network goes with code jobs only (other kinds are not sandboxed)")
    sudo = raw.get("sudo")
    if sudo is not None:
        if not isinstance(sudo, str) or not ENV_KEY_RE.match(sudo):
            p.add(f"{at}.sudo", "expected the name of the secret that holds the sudo password")
            sudo = None
        elif kind != "command":
            p.add(f"{at}.sudo", "sudo goes with command jobs only")

    if len(p.items) > before:
        return None
    return JobSpec(
        name=name,
        kind=kind,
        command=command,
        argv=argv,
        task=task,
        args=args,
        code=code,
        env=env,
        selector=selector,
        fanout=str(fanout),
        needs=needs,
        when=str(when),
        timeout=timeout,
        retries=retries,
        inputs=inputs,
        outputs=outputs,
        stdout=str(stdout),
        given=frozenset(k for k in ("on", "retries") if k in raw),
        limits=limits,
        secrets=secret_names,
        network=network,
        sudo=sudo,
    )


def _is_json(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _kind(value: object) -> str:
    return {
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def locate(toml_text: str, path: str) -> int | None:
    """The 1-based line of a dotted field path in TOML text, for error messages; None if unsure."""
    parts = [q for q in path.split(".") if q]
    if not parts:
        return None
    lines = toml_text.splitlines()
    table: list[str] = []
    best: int | None = None
    for i, line in enumerate(lines, 1):
        s = line.split("#", 1)[0].strip()
        m = re.match(r"^\[\s*([^\]]+?)\s*\]$", s)
        if m:
            table = [t.strip().strip('"') for t in m.group(1).split(".")]
            if table == parts:
                best = i
            continue
        m = re.match(r'^("?[A-Za-z0-9_.-]+"?)\s*=', s)
        if m:
            keypath = table + [k.strip('"') for k in m.group(1).split(".")]
            if keypath == parts:
                return i
            if keypath == parts[: len(keypath)] and best is None:
                best = i  # an inline table that holds the field
            elif parts[: len(keypath)] == keypath:
                best = i
    return best
