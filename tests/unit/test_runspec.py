"""Run specs: good ones parse (TOML and JSON alike), bad ones name every bad field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.domain.runspec import MAX_RETRIES, JobSpec, RunSpec, locate, parse, parse_toml
from corral.errors import InvalidInput, InvalidRunSpec

DESIGN_TOML = """\
name = "rev1234"
schedule = "parallel"            # parallel | sequential

[params]
branch = "main"

[jobs.build-linux]
task = "build"                   # registered on the server
args = { target = "all" }
on = { platform = "linux" }
timeout = "20m"
retries = 2

[jobs.unit-tests]
command = "make test"
needs = ["build-linux"]
env = { CI = "1" }

[jobs.deploy]
command = "./deploy.sh"
on = { role = "app" }
fanout = "each"

[jobs.alert]
task = "notify"
when = "failure"
needs = ["deploy"]
"""


def problems(data: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRunSpec) as info:
        parse(data)
    return info.value.problems


def one_problem(data: object) -> tuple[str, str]:
    found = problems(data)
    assert len(found) == 1, found
    return found[0]


def job(**fields: Any) -> dict[str, Any]:
    return {"jobs": {"build": {"command": "make", **fields}}}


# -- good specs ------------------------------------------------------------------------------


def test_the_design_example_parses() -> None:
    spec = parse_toml(DESIGN_TOML)
    assert spec.name == "rev1234"
    assert spec.schedule == "parallel"
    assert spec.params == {"branch": "main"}
    assert [j.name for j in spec.jobs] == ["build-linux", "unit-tests", "deploy", "alert"]
    build = spec.job("build-linux")
    assert build.kind == "task"
    assert build.task == "build"
    assert build.args == {"target": "all"}
    assert build.selector == {"platform": "linux"}
    assert build.timeout == 20 * 60
    assert build.retries == 2
    tests = spec.job("unit-tests")
    assert tests.kind == "command"
    assert tests.command == "make test"
    assert tests.needs == ("build-linux",)
    assert tests.env == {"CI": "1"}
    assert tests.when == "success"
    assert tests.fanout == "one"
    assert spec.job("deploy").fanout == "each"
    assert spec.job("alert").when == "failure"


def test_toml_and_json_give_the_same_spec() -> None:
    import tomllib

    data = tomllib.loads(DESIGN_TOML)
    from_json = parse(json.loads(json.dumps(data)))
    assert from_json == parse_toml(DESIGN_TOML)


def test_defaults_of_a_minimal_spec() -> None:
    spec = parse({"jobs": {"a": {"command": "true"}}})
    assert spec == RunSpec(name="run", jobs=(JobSpec(name="a", kind="command", command="true"),))
    assert spec.schedule == "parallel"
    assert spec.project is None


def test_command_as_argv_list() -> None:
    spec = parse({"jobs": {"a": {"command": ["ls", "-l", "a b"]}}})
    a = spec.job("a")
    assert a.argv == ("ls", "-l", "a b")
    assert a.command is None
    assert a.payload() == {"kind": "command", "argv": ["ls", "-l", "a b"]}


def test_payload_of_a_task_job() -> None:
    spec = parse({"jobs": {"t": {"task": "build", "args": {"n": 3}, "env": {"X": "y"}}}})
    assert spec.job("t").payload() == {
        "kind": "task",
        "task": "build",
        "args": {"n": 3},
        "env": {"X": "y"},
    }


def test_code_job_and_needs_as_one_string() -> None:
    spec = parse({"jobs": {"a": {"code": "print(1)"}, "b": {"command": "x", "needs": "a"}}})
    assert spec.job("a").kind == "code"
    assert spec.job("b").needs == ("a",)


def test_duplicate_needs_are_kept_once_in_order() -> None:
    spec = parse(
        {
            "jobs": {
                "a": {"command": "x"},
                "b": {"command": "x"},
                "c": {"command": "x", "needs": ["b", "a", "b"]},
            }
        }
    )
    assert spec.job("c").needs == ("b", "a")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("20m", 1200.0), ("90s", 90.0), ("1h30m", 5400.0), (45, 45.0), (2.5, 2.5), ("10", 10.0)],
)
def test_timeouts(value: object, seconds: float) -> None:
    assert parse(job(timeout=value)).job("build").timeout == seconds


def test_to_dict_round_trips_through_parse() -> None:
    specs = [
        parse_toml(DESIGN_TOML),
        parse(
            {
                "name": "abc:1/x@y",
                "project": "team-a",
                "schedule": "sequential",
                "params": {"sha": "abc", "n": 3, "nested": {"k": [1, 2]}},
                "jobs": {
                    "one": {"command": ["echo", "hi"], "env": {"A": "b"}, "timeout": 1.5},
                    "two": {"code": "print(2)", "when": "always", "retries": 100},
                    "three": {"task": "t", "on": {"os": "linux", "n": 3}, "fanout": "each"},
                    "four": {"task": "t", "args": {}, "needs": ["one", "two"]},
                },
            }
        ),
    ]
    for spec in specs:
        d = spec.to_dict()
        assert parse(d) == spec
        assert parse(json.loads(json.dumps(d))) == spec  # and it is plain JSON


# -- bad specs: each names its field ---------------------------------------------------------


def test_bad_timeout_names_the_field_path() -> None:
    field, message = one_problem({"jobs": {"build": {"command": "make", "timeout": "soon"}}})
    assert field == "jobs.build.timeout"
    assert message.startswith('expected a duration like "20m"')
    with pytest.raises(InvalidRunSpec) as info:
        parse({"jobs": {"build": {"command": "make", "timeout": "soon"}}})
    assert str(info.value).startswith('jobs.build.timeout: expected a duration like "20m"')
    assert info.value.field == "jobs.build.timeout"
    assert isinstance(info.value, InvalidInput)
    assert info.value.status == 422


@pytest.mark.parametrize("value", [0, -1, -0.5, "0s", "0", 10**9, True, [5], None])
def test_zero_negative_huge_or_wrong_timeout(value: object) -> None:
    field, message = one_problem(job(timeout=value))
    assert field == "jobs.build.timeout"
    assert "duration" in message


def test_unknown_field_at_run_level() -> None:
    field, message = one_problem({"bogus": 1, "jobs": {"a": {"command": "x"}}})
    assert field == "bogus"
    assert message.startswith("unknown field")
    assert "jobs" in message and "schedule" in message


def test_unknown_field_at_job_level() -> None:
    field, message = one_problem({"jobs": {"x": {"command": "true", "bogus": 2}}})
    assert field == "jobs.x.bogus"
    assert message.startswith("unknown field")
    assert "needs" in message


@pytest.mark.parametrize(
    ("fields", "path", "words"),
    [
        ({"command": 5}, "jobs.build.command", "shell string"),
        ({"command": ""}, "jobs.build.command", "shell string"),
        ({"command": []}, "jobs.build.command", "list of strings"),
        ({"command": ["ls", 3]}, "jobs.build.command", "list of strings"),
        ({"command": "a\x00b"}, "jobs.build.command", "NUL"),
        ({"retries": "3"}, "jobs.build.retries", "whole number"),
        ({"retries": True}, "jobs.build.retries", "whole number"),
        ({"retries": -1}, "jobs.build.retries", "whole number"),
        ({"retries": MAX_RETRIES + 1}, "jobs.build.retries", "whole number"),
        ({"retries": 1.5}, "jobs.build.retries", "whole number"),
        ({"when": "never"}, "jobs.build.when", "success, failure, always"),
        ({"fanout": "all"}, "jobs.build.fanout", "one, each"),
        ({"needs": [1]}, "jobs.build.needs", "list of job names"),
        ({"needs": {"a": 1}}, "jobs.build.needs", "list of job names"),
        ({"env": ["A=b"]}, "jobs.build.env", "NAME"),
        ({"env": {"1A": "x"}}, "jobs.build.env.1A", "environment variable name"),
        ({"env": {"A": 3}}, "jobs.build.env.A", "string value"),
        ({"args": {"a": 1}}, "jobs.build.args", "task jobs only"),
    ],
)
def test_wrong_types_and_values_name_the_field(
    fields: dict[str, Any], path: str, words: str
) -> None:
    field, message = one_problem(job(**fields))
    assert field == path
    assert words in message


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"name": ""}, "name", "characters"),
        ({"name": "-lead"}, "name", "characters"),
        ({"name": 5}, "name", "characters"),
        ({"project": "a b"}, "project", "project name"),
        ({"schedule": "whenever"}, "schedule", "parallel, sequential"),
        ({"params": [1, 2]}, "params", "table of parameters"),
        ({"params": "x"}, "params", "table of parameters"),
    ],
)
def test_bad_run_level_fields(raw: dict[str, Any], path: str, words: str) -> None:
    field, message = one_problem({**raw, "jobs": {"a": {"command": "x"}}})
    assert field == path
    assert words in message


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({}, "jobs", "at least one job"),
        ({"jobs": {}}, "jobs", "at least one job"),
        ({"jobs": [{"command": "x"}]}, "jobs", "table of jobs"),
        ({"jobs": {"a": "make"}}, "jobs.a", "expected a table"),
        ({"jobs": {"a": {}}}, "jobs.a", "exactly one of command, task or code"),
        ({"jobs": {"a": {"command": "x", "task": "t"}}}, "jobs.a", "exactly one of"),
        ({"jobs": {"a b": {"command": "x"}}}, "jobs.a b", "job name"),
        ({"jobs": {"a": {"task": "no spaces"}}}, "jobs.a.task", "task name"),
        ({"jobs": {"a": {"task": "t", "args": [1]}}}, "jobs.a.args", "table of arguments"),
        ({"jobs": {"a": {"code": ""}}}, "jobs.a.code", "Python source"),
    ],
)
def test_bad_jobs(data: dict[str, Any], path: str, words: str) -> None:
    field, message = one_problem(data)
    assert field == path
    assert words in message


@pytest.mark.parametrize("data", [[], "jobs", 3, None])
def test_a_spec_that_is_not_an_object(data: object) -> None:
    field, message = one_problem(data)
    assert field == ""
    assert "expected an object with 'jobs'" in message


@pytest.mark.parametrize(
    ("on", "words"),
    [
        ({"platform": ["linux"]}, "platform"),
        ({"platform": True}, "platform"),
        ({"platform": {"x": "y"}}, "platform"),
        ({"1bad": "linux"}, "1bad"),
        ({"bad key": "linux"}, "bad key"),
        ({"platform": "has space"}, "has space"),
        ({"platform": ""}, "platform"),
        ("platform=linux", "table"),
        (["platform=linux"], "table"),
    ],
)
def test_bad_selectors(on: object, words: str) -> None:
    field, message = one_problem(job(on=on))
    assert field == "jobs.build.on"
    assert words in message


def test_bad_selector_from_toml() -> None:
    text = '[jobs.build]\ncommand = "make"\non = { platform = ["linux"] }\n'
    with pytest.raises(InvalidRunSpec) as info:
        parse_toml(text)
    assert info.value.field == "jobs.build.on"
    assert "platform" in info.value.detail
    assert locate(text, info.value.field) == 3


# -- the needs graph -------------------------------------------------------------------------


def test_needs_cycle_names_the_cycle() -> None:
    field, message = one_problem(
        {
            "jobs": {
                "a": {"command": "x", "needs": ["c"]},
                "b": {"command": "x", "needs": ["a"]},
                "c": {"command": "x", "needs": ["b"]},
                "d": {"command": "x"},
            }
        }
    )
    assert field.startswith("jobs.") and field.endswith(".needs")
    assert "cycle" in message
    names = message.split(": ", 1)[1].split(" → ")
    assert names[0] == names[-1]
    assert sorted(names[:-1]) == ["a", "b", "c"]
    assert "d" not in names


def test_unknown_need() -> None:
    assert one_problem({"jobs": {"a": {"command": "x", "needs": ["ghost"]}}}) == (
        "jobs.a.needs",
        "unknown job 'ghost'",
    )


def test_self_need() -> None:
    assert one_problem({"jobs": {"a": {"command": "x", "needs": ["a"]}}}) == (
        "jobs.a.needs",
        "a job cannot need itself",
    )


def test_sequential_order_plus_a_backwards_need_is_a_cycle() -> None:
    # sequential: b needs a implicitly; a needing b closes a cycle
    spec = {
        "schedule": "sequential",
        "jobs": {"a": {"command": "x", "needs": ["b"]}, "b": {"command": "y"}},
    }
    field, message = one_problem(spec)
    assert field == "jobs.a.needs"
    assert "cycle" in message
    assert parse({**spec, "schedule": "parallel"}).job("a").needs == ("b",)


def test_sequential_schedule_adds_implicit_needs() -> None:
    from corral.scheduler.graph import effective_needs

    spec = parse(
        {
            "schedule": "sequential",
            "jobs": {
                "a": {"command": "x"},
                "b": {"command": "y"},
                "c": {"command": "z", "needs": ["a"]},
            },
        }
    )
    assert spec.job("b").needs == ()  # the spec keeps what was written
    assert effective_needs(spec.jobs, spec.schedule) == {"a": (), "b": ("a",), "c": ("b", "a")}
    assert effective_needs(spec.jobs, "parallel") == {"a": (), "b": (), "c": ("a",)}


# -- several problems, TOML errors, locate -------------------------------------------------


def test_multiple_problems_are_reported_together() -> None:
    data = {
        "bogus": 1,
        "schedule": "later",
        "jobs": {
            "a": {"command": 5, "timeout": "soon"},
            "b": {"command": "x", "on": {"platform": ["linux"]}, "extra": True},
        },
    }
    with pytest.raises(InvalidRunSpec) as info:
        parse(data)
    fields = [f for f, _ in info.value.problems]
    assert fields == [
        "bogus",
        "schedule",
        "jobs.a.command",
        "jobs.a.timeout",
        "jobs.b.extra",
        "jobs.b.on",
    ]
    for f in fields:
        assert f + ":" in info.value.message


def test_graph_problems_wait_for_field_problems() -> None:
    # a cycle check on half-parsed jobs would report nonsense: field problems come alone
    found = problems({"jobs": {"a": {"command": "x", "needs": ["zz"], "retries": -1}}})
    assert found == [("jobs.a.retries", "expected a whole number from 0 to 100, got -1")]


def test_toml_syntax_error_keeps_the_line() -> None:
    text = 'name = "x"\n\n[jobs.a]\ncommand = \n'
    with pytest.raises(InvalidRunSpec) as info:
        parse_toml(text)
    assert info.value.field is None
    assert "not valid TOML" in info.value.message
    assert "line 4" in info.value.message


def test_toml_duplicate_table_is_a_syntax_error() -> None:
    with pytest.raises(InvalidRunSpec, match="line 3"):
        parse_toml('[jobs.a]\ncommand = "x"\n[jobs.a]\ncommand = "y"\n')


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("name", 1),
        ("schedule", 2),
        ("params.branch", 5),
        ("jobs.build-linux", 7),
        ("jobs.build-linux.task", 8),
        ("jobs.build-linux.args.target", 9),
        ("jobs.build-linux.on", 10),
        ("jobs.build-linux.timeout", 11),
        ("jobs.build-linux.retries", 12),
        ("jobs.unit-tests.needs", 16),
        ("jobs.deploy.fanout", 22),
        ("jobs.alert.when", 26),
        ("jobs.alert.needs", 27),
    ],
)
def test_locate_finds_the_line_of_a_field(path: str, line: int) -> None:
    assert locate(DESIGN_TOML, path) == line


def test_locate_with_dotted_keys_quoted_tables_and_comments() -> None:
    text = '# a comment\n[jobs."deploy"]  # trailing\ncommand = "echo #x"\non.role = "app"\n'
    assert locate(text, "jobs.deploy") == 2
    assert locate(text, "jobs.deploy.command") == 3
    assert locate(text, "jobs.deploy.on.role") == 4


def test_locate_when_unsure() -> None:
    assert locate(DESIGN_TOML, "") is None
    assert locate(DESIGN_TOML, "jobs.nope.command") is None


def test_locate_points_at_the_field_an_error_names() -> None:
    text = '[jobs.a]\ncommand = "x"\n\n[jobs.b]\ncommand = "y"\ntimeout = "later"\n'
    with pytest.raises(InvalidRunSpec) as info:
        parse_toml(text)
    assert info.value.field == "jobs.b.timeout"
    assert locate(text, info.value.field) == 6
