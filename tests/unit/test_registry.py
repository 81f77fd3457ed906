"""The task registry: decorated functions found by parsing task files, with options and problems."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import corral
from corral.domain.runspec import parse
from corral.registry import Registry, scan_source

GOOD = b"""
import corral
from corral import task
import numpy_that_is_not_installed  # the server never imports task files

@corral.task
def wordcount(text: str) -> int:
    return len(text.split())

@task(name="shout", on={"platform": "linux"}, timeout="5m", retries=2)
def loud(text):
    return text.upper()

@corral.task()
async def later():
    return 1

def helper():
    pass

@other.task
def not_ours():
    pass
"""


def test_decorated_functions_and_their_options() -> None:
    scanned = scan_source(GOOD, "/srv/tasks/words.py")
    assert scanned.problems == ()
    assert scanned.sha256 == hashlib.sha256(GOOD).hexdigest()
    by_name = {t.name: t for t in scanned.tasks}
    assert sorted(by_name) == ["later", "shout", "wordcount"]
    wc = by_name["wordcount"]
    assert (wc.module, wc.function, wc.selector, wc.timeout, wc.retries) == (
        "words",
        "wordcount",
        {},
        None,
        None,
    )
    shout = by_name["shout"]
    assert (shout.function, dict(shout.selector), shout.timeout, shout.retries) == (
        "loud",
        {"platform": "linux"},
        300.0,
        2,
    )
    assert shout.line == 11  # the def line


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (b"@corral.task\ndef f(:\n  pass\n", "bad.py:2: invalid syntax"),
        (b"@corral.task(name=make_name())\ndef f(): pass\n", "option 'name' must be a literal"),
        (b"@corral.task(colour='red')\ndef f(): pass\n", "unknown option 'colour'"),
        (b"@corral.task('x')\ndef f(): pass\n", "options are given by keyword"),
        (b"@corral.task(name='no spaces')\ndef f(): pass\n", "is not a task name"),
        (b"@corral.task(timeout='soon')\ndef f(): pass\n", "expected a duration"),
        (b"@corral.task(retries=-1)\ndef f(): pass\n", "retries: expected a whole number"),
        (b"@corral.task(on=['platform'])\ndef f(): pass\n", "on:"),
        (b"\x00", "bad.py"),
    ],
)
def test_bad_task_files_are_reported_not_raised(source: bytes, problem: str) -> None:
    scanned = scan_source(source, "/srv/tasks/bad.py")
    assert scanned.tasks == ()
    assert len(scanned.problems) == 1
    assert problem in scanned.problems[0]


def test_one_bad_task_leaves_the_others_of_its_file() -> None:
    source = b"@corral.task\ndef good(): pass\n\n@corral.task(retries='x')\ndef bad(): pass\n"
    scanned = scan_source(source, "m.py")
    assert [t.name for t in scanned.tasks] == ["good"]
    assert "m.py:5: task 'bad'" in scanned.problems[0]


def test_the_decorator_marks_and_returns_the_function() -> None:
    def f(x: int) -> int:
        return x + 1

    assert corral.task(f) is f
    g = corral.task(name="g", retries=1)(f)
    assert g is f and g(1) == 2
    assert f.__corral_task__ == {"name": "g", "retries": 1}  # type: ignore[attr-defined]


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # a later version in the same nanosecond tick would look unchanged; real edits are slower
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_registry_rescans_changed_files_and_keeps_old_sources(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "import corral\n@corral.task\ndef one(): return 1\n")
    (tmp_path / "notes.txt").write_text("not a task file")
    registry = Registry([tmp_path])
    first = registry.lookup("one")
    assert first is not None and first.module == "a"
    old_sha = first.sha256
    assert registry.source(old_sha) == (tmp_path / "a.py").read_bytes()

    write(tmp_path / "a.py", "import corral\n@corral.task\ndef one(): return 'one, again'\n")
    found = registry.lookup_all(["one", "nope"])
    assert list(found) == ["one"]
    assert found["one"].sha256 != old_sha
    assert registry.source(old_sha) is not None  # a job leased before the change still runs
    assert registry.source(found["one"].sha256) == (tmp_path / "a.py").read_bytes()
    assert registry.source("0" * 64) is None

    (tmp_path / "a.py").unlink()
    assert registry.lookup_all(["one"]) == {}


def test_a_syntax_error_leaves_other_files_and_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "good.py", "import corral\n@corral.task\ndef fine(): pass\n")
    write(tmp_path / "broken.py", "import corral\n@corral.task\ndef oops(:\n")
    registry = Registry([tmp_path])
    assert [t.name for t in registry.tasks()] == ["fine"]
    assert registry.lookup("oops") is None
    assert any("broken.py:3" in p for p in registry.problems())


def test_duplicate_task_names_and_modules_keep_the_first(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write(one / "a.py", "@task\ndef t(): pass\n")
    write(one / "b.py", "@task\ndef t(): pass\n")
    write(two / "a.py", "@task\ndef u(): pass\n")
    registry = Registry([one, two, tmp_path / "missing"])
    t = registry.lookup("t")
    assert t is not None and t.module == "a"
    assert registry.lookup("u") is None
    problems = "\n".join(registry.problems())
    assert "task 't' is already defined" in problems
    assert "module 'a' is also" in problems
    assert "missing" in problems


def test_task_defaults_fill_in_what_the_job_did_not_set(tmp_path: Path) -> None:
    write(
        tmp_path / "m.py",
        "@task(on={'gpu': 'yes'}, timeout='1m', retries=3)\ndef t(): pass\n",
    )
    t = Registry([tmp_path]).lookup("t")
    assert t is not None
    spec = parse(
        {
            "jobs": {
                "plain": {"task": "t"},
                "own": {"task": "t", "on": {"site": "x"}, "timeout": "5s", "retries": 1},
                "none": {"task": "t", "on": {}, "retries": 0},
            }
        }
    )
    plain, own, none = (t.apply(spec.job(n)) for n in ("plain", "own", "none"))
    assert (dict(plain.selector), plain.timeout, plain.retries) == ({"gpu": "yes"}, 60.0, 3)
    assert (dict(own.selector), own.timeout, own.retries) == ({"site": "x"}, 5.0, 1)
    assert (dict(none.selector), none.timeout, none.retries) == ({}, 60.0, 0)
    # what the job set itself survives the JSON form the CLI sends
    again = parse(spec.to_dict()).job("none")
    assert again.given == frozenset({"on", "retries"})
