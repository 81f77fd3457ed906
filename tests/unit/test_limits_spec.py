"""Limits, secrets and network in run specs: parsed, carried in the payload, errors by path."""

from __future__ import annotations

import pytest

from corral.domain.limits import format_size, parse_limits, parse_size
from corral.domain.runspec import parse
from corral.errors import InvalidRunSpec


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * 1024**2),
        ("1GiB", 1024**3),
        ("64k", 64 * 1024),
        ("1.5G", int(1.5 * 1024**3)),
        ("10MB", 10_000_000),
        (4096, 4096),
        (" 2 MiB ", 2 * 1024**2),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "12 parsecs", "-1MiB", "0", 0, True, 1.5, "2PiB", None])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a size like"):
        parse_size(bad)


def test_limits_parse_all_kinds() -> None:
    limits, problems = parse_limits(
        {"cpu": "10s", "memory": "512MiB", "procs": 64, "fsize": "1GiB", "nofile": 256}
    )
    assert problems == []
    assert limits == {
        "cpu": 10.0,
        "memory": 512 * 1024**2,
        "procs": 64,
        "fsize": 1024**3,
        "nofile": 256,
    }


def test_limits_in_a_spec_reach_the_payload() -> None:
    spec = parse({"jobs": {"x": {"command": "true", "limits": {"cpu": "1m", "procs": 8}}}})
    job = spec.job("x")
    assert job.limits == {"cpu": 60.0, "procs": 8}
    assert job.payload()["limits"] == {"cpu": 60.0, "procs": 8}
    assert parse(spec.to_dict()) == spec


def problems(data: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRunSpec) as info:
        parse(data)
    return list(info.value.problems)


def test_bad_limits_are_named_by_their_path_all_at_once() -> None:
    found = problems(
        {
            "jobs": {
                "x": {
                    "command": "true",
                    "limits": {"memory": "lots", "cpu": -1, "procs": 0, "disk": "1G"},
                }
            }
        }
    )
    paths = dict(found)
    assert paths["jobs.x.limits.memory"].startswith('expected a size like "512MiB"')
    assert "duration" in paths["jobs.x.limits.cpu"]
    assert "whole number" in paths["jobs.x.limits.procs"]
    assert "unknown limit" in paths["jobs.x.limits.disk"]
    assert problems({"jobs": {"x": {"command": "true", "limits": 5}}}) == [
        ("jobs.x.limits", 'expected a table like { cpu = "10s", memory = "512MiB" }')
    ]


def test_secrets_and_network_in_a_spec() -> None:
    spec = parse(
        {"jobs": {"x": {"code": "print(1)", "secrets": ["API_KEY", "API_KEY"], "network": True}}}
    )
    job = spec.job("x")
    assert job.secrets == ("API_KEY",)
    assert job.network is True
    assert job.payload()["secrets"] == ["API_KEY"]
    assert job.payload()["network"] is True
    assert parse(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("job", "path", "words"),
    [
        ({"command": "x", "secrets": "API_KEY"}, "jobs.x.secrets", "list of"),
        ({"command": "x", "secrets": ["bad-name"]}, "jobs.x.secrets", "secret names"),
        ({"command": "x", "secrets": ["K"], "env": {"K": "v"}}, "jobs.x.secrets", "also set"),
        ({"command": "x", "network": True}, "jobs.x.network", "code jobs only"),
        ({"code": "print()", "network": "yes"}, "jobs.x.network", "true or false"),
        ({"code": "x" * 70_000}, "jobs.x.code", "at most"),
    ],
)
def test_bad_secrets_network_and_code(job: dict[str, object], path: str, words: str) -> None:
    found = problems({"jobs": {"x": job}})
    assert [p for p, _ in found] == [path]
    assert words in found[0][1]


def test_format_size() -> None:
    assert format_size(512 * 1024**2) == "512 MiB"
    assert format_size(1024**3) == "1 GiB"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(10) == "10 bytes"
