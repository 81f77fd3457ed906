"""max_parallel, max_failures and sudo in run specs: parsed from TOML and JSON, errors by field."""

from __future__ import annotations

import json

import pytest

from corral.domain.runspec import MAX_RUN_LIMIT, parse, parse_toml
from corral.errors import InvalidRunSpec

ROLLING = """\
name = "deploy"
max_parallel = 2
max_failures = 1

[jobs.deploy]
command = "sudo systemctl restart app"
on = { role = "app" }
fanout = "each"
sudo = "DEPLOY_SUDO"
"""


def problems(data: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRunSpec) as info:
        parse(data)
    return info.value.problems


def test_limits_and_sudo_parse_from_toml_and_round_trip_through_json() -> None:
    spec = parse_toml(ROLLING)
    assert (spec.max_parallel, spec.max_failures) == (2, 1)
    assert spec.job("deploy").sudo == "DEPLOY_SUDO"
    assert spec.job("deploy").payload()["sudo"] == "DEPLOY_SUDO"
    as_json = json.loads(json.dumps(spec.to_dict()))
    assert as_json["max_parallel"] == 2 and as_json["max_failures"] == 1
    assert as_json["jobs"]["deploy"]["sudo"] == "DEPLOY_SUDO"
    assert parse(as_json) == spec


def test_without_limits_nothing_is_set() -> None:
    spec = parse({"jobs": {"a": {"command": "true"}}})
    assert spec.max_parallel is None and spec.max_failures is None
    assert "max_parallel" not in spec.to_dict() and "sudo" not in spec.job("a").payload()


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True, MAX_RUN_LIMIT + 1, [1]])
@pytest.mark.parametrize("key", ["max_parallel", "max_failures"])
def test_a_bad_limit_names_its_field(key: str, value: object) -> None:
    found = problems({key: value, "jobs": {"a": {"command": "true"}}})
    assert found == [(key, f"expected a whole number from 1 to {MAX_RUN_LIMIT}, got {value!r}")]


def test_bad_limits_are_reported_with_the_other_problems() -> None:
    found = problems({"max_parallel": 0, "max_failures": "x", "jobs": {}})
    assert [path for path, _ in found] == ["max_parallel", "max_failures", "jobs"]


@pytest.mark.parametrize("value", ["", "no-dash", "1abc", 3, ["A"]])
def test_sudo_names_a_secret(value: object) -> None:
    found = problems({"jobs": {"a": {"command": "true", "sudo": value}}})
    assert found == [
        ("jobs.a.sudo", "expected the name of the secret that holds the sudo password")
    ]


@pytest.mark.parametrize(
    "job", [{"code": "print(1)"}, {"task": "build"}, {"command": ["sudo", "true"], "sudo": "P"}]
)
def test_sudo_goes_with_command_jobs_only(job: dict[str, object]) -> None:
    if "command" in job:
        assert parse({"jobs": {"a": job}}).job("a").sudo == "P"  # argv commands too
        return
    found = problems({"jobs": {"a": {**job, "sudo": "P"}}})
    assert found == [("jobs.a.sudo", "sudo goes with command jobs only")]
