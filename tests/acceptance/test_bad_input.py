"""Bad input, through raw HTTP and through the CLI: a 4xx naming the problem, and no change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from acceptance_helpers import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

GOOD_JOB = {"command": "echo ok"}


def _error(answer: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """The answer has `status` and a JSON error whose message holds every one of `words`."""
    assert answer.status_code == status, f"{answer.status_code} {answer.text}"
    error: dict[str, Any] = answer.json()["error"]
    message = error["message"].lower()
    for word in words:
        assert word.lower() in message, f"{word!r} not in {error['message']!r}"
    return error


def _store(cluster: Cluster) -> tuple[Any, ...]:
    """What the store holds that bad input could change: runs (with their states) and workers."""
    runs = tuple((r["id"], r["state"], tuple(sorted(r["counts"].items()))) for r in cluster.runs())
    return runs, tuple(sorted(cluster.workers()))


BAD_SPECS: list[tuple[str, Any, tuple[str, ...]]] = [
    ("not an object", [1, 2, 3], ("expected an object",)),
    ("no jobs", {"name": "x"}, ("jobs", "at least one job")),
    ("jobs of the wrong type", {"name": "x", "jobs": "build"}, ("jobs", "table of jobs")),
    ("name of the wrong type", {"name": 7, "jobs": {"a": GOOD_JOB}}, ("name",)),
    (
        "retries of the wrong type",
        {"jobs": {"a": {"command": "true", "retries": "two"}}},
        ("jobs.a.retries", "whole number"),
    ),
    (
        "command of the wrong type",
        {"jobs": {"a": {"command": 42}}},
        ("jobs.a.command",),
    ),
    (
        "unknown run field",
        {"name": "x", "colour": "red", "jobs": {"a": GOOD_JOB}},
        ("colour", "unknown field"),
    ),
    (
        "unknown job field",
        {"jobs": {"a": {"command": "true", "comand": "true"}}},
        ("jobs.a.comand", "unknown field"),
    ),
    (
        "needs cycle",
        {
            "jobs": {
                "a": {"command": "true", "needs": ["b"]},
                "b": {"command": "true", "needs": "a"},
            }
        },
        ("needs", "cycle"),
    ),
    (
        "needs an unknown job",
        {"jobs": {"a": {"command": "true", "needs": ["nope"]}}},
        ("jobs.a.needs", "unknown job"),
    ),
    (
        "selector with a list",
        {"jobs": {"a": {"command": "true", "on": {"platform": ["linux"]}}}},
        ("jobs.a.on", "platform"),
    ),
    (
        "selector as a string",
        {"jobs": {"a": {"command": "true", "on": "platform=linux"}}},
        ("jobs.a.on",),
    ),
    (
        "negative timeout string",
        {"jobs": {"a": {"command": "true", "timeout": "-5s"}}},
        ("jobs.a.timeout",),
    ),
    (
        "negative timeout number",
        {"jobs": {"a": {"command": "true", "timeout": -5}}},
        ("jobs.a.timeout", "positive"),
    ),
    (
        "unknown when",
        {"jobs": {"a": {"command": "true", "when": "sometimes"}}},
        ("jobs.a.when", "sometimes"),
    ),
    (
        "unknown schedule",
        {"schedule": "whenever", "jobs": {"a": GOOD_JOB}},
        ("schedule", "whenever"),
    ),
]


@pytest.mark.timeout(60)
def test_bad_http_requests_get_4xx_and_change_nothing(shared: Cluster) -> None:
    admin = shared.http()
    before = _store(shared)

    for what, body, words in BAD_SPECS:
        answer = admin.post("/api/v1/runs", json=body)
        assert 400 <= answer.status_code < 500, f"{what}: {answer.status_code} {answer.text}"
        _error(answer, answer.status_code, *words)

    answer = admin.post(
        "/api/v1/runs",
        content=b'{"name": "x", "jobs": {',
        headers={"content-type": "application/json"},
    )
    _error(answer, 422, "malformed JSON", "line 1")
    answer = admin.post("/api/v1/runs", content=b"", headers={"content-type": "application/json"})
    _error(answer, 422, "empty")
    answer = admin.post("/api/v1/runs", content=b'{"name": "\xff"}')
    _error(answer, 422, "UTF-8")

    # the body cap (8 MiB by default) holds before the body is read
    answer = admin.post(
        "/api/v1/runs",
        content=b'{"name": "big", "jobs": {"a": {"command": "' + b"x" * (9 << 20) + b'"}}}',
        headers={"content-type": "application/json"},
    )
    _error(answer, 413, "request body over")

    # tokens
    body = {"name": "x", "jobs": {"a": GOOD_JOB}}
    _error(shared.http(token=None).post("/api/v1/runs", json=body), 401, "missing token")
    _error(shared.http(token=None).get("/api/v1/runs"), 401, "missing token")
    wrong = shared.http(token="crl_not-a-real-token")
    _error(wrong.post("/api/v1/runs", json=body), 401, "unknown or revoked token")
    _error(wrong.get("/api/v1/runs/1"), 401, "unknown or revoked token")
    basic = httpx.Client(base_url=shared.url, headers={"authorization": "Basic YTpi"})
    shared.procs.clients.append(basic)
    _error(basic.get("/api/v1/runs"), 401, "bearer")

    # things that are not there, and wrong query types
    _error(admin.post("/api/v1/runs", params={"project": "nope"}, json=body), 404, "nope")
    _error(admin.get("/api/v1/runs/999999"), 404)
    _error(admin.post("/api/v1/runs/999999/cancel"), 404)
    _error(admin.get("/api/v1/runs", params={"limit": "lots"}), 422, "limit")
    _error(admin.get("/api/v1/runs", params={"state": "sideways"}), 422, "state")

    # worker routes: the wrong kind of token, and bodies of the wrong shape
    _error(admin.post("/api/v1/workers/lease", json={"max": 1}), 403, "worker credential")
    join = shared.join_token()
    joiner = shared.http(token=join)
    _error(joiner.post("/api/v1/workers/join", json={"name": "w", "slots": "four"}), 422, "slots")
    _error(
        joiner.post("/api/v1/workers/join", json={"name": "w", "colour": "red"}),
        422,
        "colour",
        "unknown field",
    )
    _error(joiner.post("/api/v1/workers/join", json={"name": "bad name!"}), 422, "name")
    _error(
        joiner.post("/api/v1/workers/join", json={"name": "w", "incarnation": "x" * 65}),
        422,
        "incarnation",
    )
    _error(joiner.post("/api/v1/workers/join", json={"name": "w", "rejoin": "yes"}), 422, "rejoin")
    _error(
        joiner.post("/api/v1/workers/join", json={"name": "w", "labels": {"1x": "y"}}),
        422,
        "labels",
    )
    _error(admin.post("/api/v1/tokens", json={"kind": "emperor"}), 422, "kind")
    _error(admin.post("/api/v1/tokens", json={"kind": "reader"}), 422, "project")

    assert _store(shared) == before


def test_stale_lease_token_is_refused_and_changes_nothing(shared: Cluster) -> None:
    join = shared.join_token()
    joined = shared.http(token=join).post(
        "/api/v1/workers/join", json={"name": "by-hand", "labels": {"pool": "by-hand"}}
    )
    assert joined.status_code == 200, joined.text
    worker = shared.http(token=joined.json()["token"])
    run_id = shared.submit(
        {"name": "by-hand", "jobs": {"j": {"command": "echo hi", "on": {"pool": "by-hand"}}}}
    )["id"]

    answer = worker.post("/api/v1/workers/lease", json={"max": 1, "wait": 5})
    assert answer.status_code == 200, answer.text
    (lease,) = answer.json()["leases"]
    attempt, token = lease["attempt"], lease["token"]
    assert lease["run_id"] == run_id
    finish = {"attempt": attempt, "outcome": "passed", "exit_code": 0, "reason": "exit 0"}

    # a made-up token while the lease is held: 409, and the job is still leased to us
    held = shared.job(run_id, "j")
    for action, body in (
        ("finish", finish),
        ("heartbeat", {}),
        ("log", {"seq": 0, "stream": "stdout", "ts": 1.0, "data": "forged\n"}),
        ("start", {"at": 1.0}),
    ):
        answer = worker.post(
            f"/api/v1/attempts/{attempt}/{action}",
            json={"attempt": attempt, "token": "f" * 32, **body},
        )
        _error(answer, 409, "not the current lease")
    assert shared.job(run_id, "j") == held
    # the body and the path must name the same attempt
    answer = worker.post(
        f"/api/v1/attempts/{attempt + 1000}/finish", json={"token": token, **finish}
    )
    _error(answer, 422, "attempt")
    assert shared.job(run_id, "j") == held

    answer = worker.post(f"/api/v1/attempts/{attempt}/finish", json={"token": token, **finish})
    assert answer.status_code == 200 and answer.json()["state"] == "passed", answer.text
    done = shared.job(run_id, "j")
    # the same finish again is idempotent; a made-up token after the end is refused
    again = worker.post(f"/api/v1/attempts/{attempt}/finish", json={"token": token, **finish})
    assert again.status_code == 200, again.text
    answer = worker.post(
        f"/api/v1/attempts/{attempt}/finish",
        json={"token": "0" * 32, **finish, "outcome": "failed", "exit_code": 1},
    )
    _error(answer, 409, "not the current lease")
    answer = worker.post(
        f"/api/v1/attempts/{attempt}/log",
        json={
            "attempt": attempt,
            "token": "0" * 32,
            "seq": 1,
            "stream": "stdout",
            "ts": 2.0,
            "data": "late\n",
        },
    )
    _error(answer, 409)
    assert shared.job(run_id, "j") == done
    assert done["state"] == "passed" and done["attempts"] == 1
    log = shared.get(f"/api/v1/runs/{run_id}/jobs/j/log")
    assert "forged" not in json.dumps(log) and "late" not in json.dumps(log)


BAD_TOML: list[tuple[str, str, int, str, tuple[str, ...]]] = [
    # (what, spec text, line of the problem, field, words in the message)
    (
        "unknown job field",
        'name = "x"\n\n[jobs.build]\ncomand = "make"\n',
        4,
        "jobs.build.comand",
        ("unknown field",),
    ),
    (
        "unknown run field",
        'name = "x"\ncolour = "red"\n[jobs.build]\ncommand = "make"\n',
        2,
        "colour",
        ("unknown field",),
    ),
    (
        "wrong type",
        '[jobs.build]\ncommand = "make"\nretries = "two"\n',
        3,
        "jobs.build.retries",
        ("whole number",),
    ),
    (
        "needs cycle",
        '[jobs.a]\ncommand = "true"\nneeds = ["b"]\n\n[jobs.b]\ncommand = "true"\nneeds = ["a"]\n',
        3,
        "jobs.a.needs",
        ("cycle",),
    ),
    (
        "selector with a list",
        '[jobs.build]\ncommand = "make"\non = { platform = ["linux"] }\n',
        3,
        "jobs.build.on",
        ("platform",),
    ),
    (
        "negative timeout",
        '[jobs.build]\ncommand = "make"\ntimeout = "-5m"\n',
        3,
        "jobs.build.timeout",
        ("duration",),
    ),
    (
        "unknown when",
        '[jobs.build]\ncommand = "make"\n\n[jobs.hook]\ncommand = "x"\nwhen = "later"\n',
        6,
        "jobs.hook.when",
        ("later",),
    ),
]


def test_bad_cli_input_names_file_line_and_field(shared: Cluster, tmp_path: Path) -> None:
    before = _store(shared)
    specs = []
    for i, (_, text, *_rest) in enumerate(BAD_TOML):
        specs.append(tmp_path / f"bad{i}.toml")
        specs[-1].write_text(text)
    results = shared.cli_many(*(("submit", str(spec)) for spec in specs))
    for spec, done, (what, _, line, field, words) in zip(specs, results, BAD_TOML, strict=True):
        assert done.code == 2, f"{what}: {done}"
        assert f"{spec}:{line}: {field}: " in done.err, f"{what}: {done}"
        for word in words:
            assert word in done.err, f"{what}: {word!r} missing: {done}"
        assert done.out == "", f"{what}: {done}"

    syntax = tmp_path / "syntax.toml"
    syntax.write_text('name = "x"\n[jobs.build\ncommand = "make"\n')
    good = tmp_path / "good.toml"
    good.write_text('[jobs.a]\ncommand = "true"\n')
    expected: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        # (the command, words its error shows)
        (("submit", str(syntax)), (str(syntax), "line 2", "not valid TOML")),
        (("submit", str(tmp_path / "missing.toml")), ("missing.toml",)),
        (("submit", str(good), "--project", "nope"), ("no project 'nope'",)),
        (("run", "--on", "platform", "--", "true"), ("--on", "key=value")),
        (("run", "--timeout", "-1s", "--", "true"), ("timeout",)),
        (("run", "--env", "NOEQUALS", "--", "true"), ("NAME=VALUE",)),
        (("status", "999999"), ("999999",)),
        (("logs", "999999/job"), ("999999",)),
        (("cancel", "999999"), ("999999",)),
        (("rerun", "999999"), ("999999",)),
        (("drain", "no-such-worker"), ("no-such-worker",)),
        # refused before it joins or makes anything
        (("worker", "--name", "../up", "--workdir", str(tmp_path / "w")), ("--name", "../up")),
    ]
    results = shared.cli_many(*(args for args, _ in expected))
    for (args, words), done in zip(expected, results, strict=True):
        assert done.code == 2, f"corral {' '.join(args)}: {done}"
        assert "Traceback" not in done.err, done
        for word in words:
            assert word in done.err, f"corral {' '.join(args)}: {word!r} missing: {done}"

    (wrong,) = shared.cli_many(("submit", str(good)), token="crl_wrong")
    assert wrong.code == 2 and "unknown or revoked token" in wrong.err, wrong
    (missing,) = shared.cli_many(("submit", str(good)), token=None)
    assert missing.code == 2 and "missing token" in missing.err, missing

    assert _store(shared) == before
    assert not (tmp_path / "w").exists()
