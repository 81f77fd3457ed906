"""Run-spec dataflow: inputs from objects and other jobs, declared outputs, stdout as an object."""

from __future__ import annotations

from typing import Any

import pytest

from corral.domain.dataflow import Input, matches_output, parse_sha256, path_problem
from corral.domain.runspec import RunSpec, parse, parse_toml
from corral.errors import InvalidRunSpec

SHA = "ab" * 32


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(InvalidRunSpec) as info:
        parse(data)
    return dict(info.value.problems)


def chain() -> dict[str, Any]:
    return {
        "jobs": {
            "fetch": {"command": "cat inputs/data.csv", "inputs": {"data.csv": f"sha256:{SHA}"}},
            "count": {
                "command": "wc -l inputs/rows",
                "inputs": {"rows": "fetch:stdout"},
                "stdout": "object",
                "outputs": ["out/*.txt", "model.bin"],
            },
            "report": {
                "command": "cat inputs/counts inputs/m",
                "inputs": {
                    "counts": "count:stdout",
                    "m": "count:model.bin",
                    "t": "count:out/a.txt",
                },
            },
        }
    }


def test_inputs_outputs_and_stdout_parse_and_add_needs() -> None:
    data = chain()
    data["jobs"]["fetch"]["stdout"] = "object"
    spec = parse(data)
    fetch, count, report = spec.jobs
    assert fetch.inputs == (Input(name="data.csv", sha256=SHA),)
    assert fetch.needs == ()
    assert count.needs == ("fetch",)  # taking fetch's stdout means waiting for fetch
    assert count.outputs == ("out/*.txt", "model.bin")
    assert count.stdout == "object"
    assert report.needs == ("count",)
    assert [i.ref() for i in report.inputs] == [
        "count:stdout",
        "count:model.bin",
        "count:out/a.txt",
    ]
    payload = count.payload()
    assert payload["inputs"] == [{"name": "rows", "job": "fetch", "output": "stdout"}]
    assert payload["outputs"] == ["out/*.txt", "model.bin"]
    assert payload["stdout"] == "object"
    assert "stdout" not in report.payload()


def test_round_trip_keeps_dataflow() -> None:
    data = chain()
    data["jobs"]["fetch"]["stdout"] = "object"
    spec = parse(data)
    again = parse(spec.to_dict())
    assert isinstance(again, RunSpec) and again == spec


def test_explicit_needs_and_input_needs_merge_without_repeats() -> None:
    spec = parse(
        {
            "jobs": {
                "a": {"command": "x", "stdout": "object"},
                "b": {"command": "y", "needs": ["a"], "inputs": {"i": "a:stdout"}},
            }
        }
    )
    assert spec.job("b").needs == ("a",)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"../etc/passwd": f"sha256:{SHA}"}, "bad input name"),
        ({"/abs": f"sha256:{SHA}"}, "bad input name"),
        ({"a\x00b": f"sha256:{SHA}"}, "control characters"),
        ({"a\nb": f"sha256:{SHA}"}, "control characters"),
        ({"a//b": f"sha256:{SHA}"}, "empty"),
        ({"x": "sha256:XYZ"}, "64 lowercase hex"),
        ({"x": f"sha256:{SHA.upper()}"}, "64 lowercase hex"),
        ({"x": 5}, "expected"),
        ({"x": "nocolon"}, "expected"),
        ({"x": "fetch:../secret"}, "bad output path"),
        ({"x": "fetch:*.txt"}, "glob"),
    ],
)
def test_bad_inputs_name_the_field(inputs: dict[str, Any], message: str) -> None:
    data = {"jobs": {"fetch": {"command": "x"}, "use": {"command": "y", "inputs": inputs}}}
    found = problems(data)
    assert any(k.startswith("jobs.use.inputs") and message in v for k, v in found.items()), found


def test_inputs_must_be_a_table() -> None:
    assert "jobs.a.inputs" in problems({"jobs": {"a": {"command": "x", "inputs": ["f"]}}})


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ({"use": {"command": "y", "inputs": {"i": "ghost:stdout"}}}, "unknown job 'ghost'"),
        ({"use": {"command": "y", "inputs": {"i": "use:stdout"}}}, "its own output"),
        (
            {"p": {"command": "x"}, "use": {"command": "y", "inputs": {"i": "p:stdout"}}},
            'set stdout = "object"',
        ),
        (
            {
                "p": {"command": "x", "outputs": ["out/*.txt"]},
                "use": {"command": "y", "inputs": {"i": "p:out/sub/a.txt"}},
            },
            "not among the outputs",
        ),
        (
            {
                "p": {"command": "x", "stdout": "object", "fanout": "each"},
                "use": {"command": "y", "inputs": {"i": "p:stdout"}},
            },
            "fanout = each",
        ),
    ],
)
def test_references_to_other_jobs_are_checked(jobs: dict[str, Any], message: str) -> None:
    found = problems({"jobs": jobs})
    assert any(message in v for k, v in found.items() if k == "jobs.use.inputs.i"), found


def test_inputs_can_make_a_cycle_and_it_is_caught() -> None:
    found = problems(
        {
            "jobs": {
                "a": {"command": "x", "stdout": "object", "inputs": {"i": "b:stdout"}},
                "b": {"command": "y", "stdout": "object", "inputs": {"i": "a:stdout"}},
            }
        }
    )
    assert any("cycle" in v for v in found.values()), found


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ("ok.txt", None),
        (["../up"], "bad output path"),
        (["/etc/x"], "bad output path"),
        ([3], "bad output path"),
        ({"a": 1}, "expected a list"),
    ],
)
def test_outputs(outputs: Any, message: str | None) -> None:
    data = {"jobs": {"a": {"command": "x", "outputs": outputs}}}
    if message is None:
        assert parse(data).jobs[0].outputs == ("ok.txt",)
    else:
        assert any(message in v for v in problems(data).values())


def test_stdout_takes_log_or_object() -> None:
    assert "jobs.a.stdout" in problems({"jobs": {"a": {"command": "x", "stdout": "file"}}})


def test_toml_spec_with_dataflow() -> None:
    spec = parse_toml(
        f"""
[jobs.count]
command = "wc -l inputs/data.csv"
inputs = {{ "data.csv" = "sha256:{SHA}" }}
stdout = "object"

[jobs.report]
command = "cat inputs/n"
inputs = {{ n = "count:stdout" }}
"""
    )
    assert spec.job("report").needs == ("count",)


@pytest.mark.parametrize(
    ("path", "pattern", "hit"),
    [
        ("out/a.txt", "out/*.txt", True),
        ("out/sub/a.txt", "out/*.txt", False),
        ("model.bin", "model.bin", True),
        ("model.bin2", "model.bin", False),
        ("r1.html", "r?.html", True),
        ("ra.csv", "r[a-c].csv", True),
        ("rd.csv", "r[!a-c].csv", True),
        ("ra.csv", "r[!a-c].csv", False),
        ("a+b.txt", "a+b.txt", True),
    ],
)
def test_output_globs(path: str, pattern: str, hit: bool) -> None:
    assert matches_output(path, [pattern]) is hit


def test_path_rules_and_sha_parsing() -> None:
    assert path_problem("a/b.txt") is None
    assert path_problem("a/*.txt", glob=True) is None
    assert path_problem("x" * 2000) is not None
    assert path_problem("a\\b") is not None
    assert path_problem(".") is not None
    assert parse_sha256(f"sha256:{SHA}") == SHA
    assert parse_sha256(SHA) == SHA
    assert parse_sha256("sha256:" + "g" * 64) is None
