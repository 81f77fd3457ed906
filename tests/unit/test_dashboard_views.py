"""Pure shaping for the dashboard: durations, graph depths, log lines, matrix columns."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from corral.dashboard import views
from corral.dashboard.sessions import Sessions, same
from corral.domain.models import Job, LogChunk, Run
from corral.domain.states import JobState, RunState


def job(name: str, needs: tuple[str, ...] = (), instance: str = "", **kw: Any) -> Job:
    base = Job(
        id=0, run_id=1, name=name, instance=instance, kind="command", payload={}, selector={},
        needs=needs, when="success", timeout=None, retries=0, state=JobState.PASSED, attempts=1,
        reason="", exit_code=0, worker="w", not_before=0.0, created_at=0.0, started_at=1.0,
        ended_at=2.0,
    )  # fmt: skip
    return replace(base, **kw)


def run(run_id: int) -> Run:
    return Run(run_id, "p", "nightly", "", RunState.PASSED, {}, "me", 0.0, None, None)


def test_durations_read_like_people_write_them() -> None:
    assert views.seconds(0.42) == "0.4s"
    assert views.seconds(42) == "42s"
    assert views.seconds(184) == "3m 04s"
    assert views.seconds(7500) == "2h 05m"
    assert views.duration(None, None) == ""
    assert views.duration(10.0, 12.5) == "2.5s"
    assert views.duration(10.0, None, now=70.0) == "1m 00s"
    assert views.ago(100.0, now=103.0) == "3.0s ago"
    assert views.clock(0) == "1970-01-01 00:00:00"


def test_counts_put_trouble_first() -> None:
    got = views.ordered_counts({"passed": 3, "failed": 1, "queued": 0, "running": 2})
    assert got == [("failed", 1), ("running", 2), ("passed", 3)]


def test_depths_follow_the_longest_chain_of_needs() -> None:
    jobs = [
        job("build"),
        job("lint"),
        job("test", ("build",)),
        job("deploy", ("test", "lint")),
        job("deploy", ("test", "lint"), instance="web1"),
        job("odd", ("missing",)),
    ]
    assert views.depths(jobs) == {"build": 0, "lint": 0, "test": 1, "deploy": 2, "odd": 1}


def test_log_lines_keep_streams_and_find_the_first_error() -> None:
    log = views.LogView()
    lines = log.feed(
        [
            LogChunk(0, "stdout", 1.0, "compiling\nall good\n"),
            LogChunk(1, "corral", 1.1, "error words from corral itself do not count\n"),
            LogChunk(2, "stderr", 1.2, "\x1b[31mError: <oops>\x1b[0m\nFAILED again\n"),
        ]
    )
    assert [(ln.seq, ln.stream) for ln in lines] == [
        (0, "stdout"), (0, "stdout"), (1, "corral"), (2, "stderr"), (2, "stderr"),
    ]  # fmt: skip
    assert [ln.first_error for ln in lines] == [False, False, False, True, False]
    assert lines[3].html == '<span class="c-red">Error: &lt;oops&gt;</span>'
    assert log.found_error
    # once found, later pieces find no other first error
    assert not any(ln.first_error for ln in log.feed([LogChunk(3, "stderr", 2, "error\n")]))
    assert views.ERROR_RE.search("terror") is None


def test_matrix_columns_keep_spec_order_across_runs() -> None:
    rows = [
        (run(3), [job("build"), job("test"), job("deploy", instance="web1")]),
        (run(2), [job("build"), job("lint"), job("test")]),
    ]
    assert views.matrix_columns(rows) == ["build", "test", "deploy[web1]", "lint"]
    assert set(views.matrix_cells(rows[0][1])) == {"build", "test", "deploy[web1]"}


def test_inputs_and_resources_are_named_for_people() -> None:
    payload = {
        "inputs": [
            {"name": "model.bin", "job": "train", "output": "out/model.bin"},
            {"name": "data.csv", "sha256": "ab" * 32},
        ]
    }
    assert views.payload_inputs(payload) == [
        ("model.bin", "train:out/model.bin"),
        ("data.csv", "sha256:" + "ab" * 32),
    ]
    assert views.payload_inputs({}) == []
    got = dict(views.resources({"wall_s": 2.5, "max_rss_kib": 2048.0, "gpus": 1.0}))
    assert got == {"wall": "2.5s", "max rss": "2.0 MiB", "gpus": "1"}
    assert views.size(512) == "512 B" and views.size(1536) == "1.5 KiB"


def test_sessions_are_random_expire_and_end() -> None:
    s = Sessions(idle=60.0)
    sid, session = s.create("crl_secret")
    other, _ = s.create("crl_secret")
    assert sid != other and len(sid) >= 40 and "crl_secret" not in sid
    assert s.get(sid) is session and s.get("nope") is None and s.get(None) is None
    session.last_used -= 61.0
    assert s.get(sid) is None  # idle too long
    s.end(other)
    assert s.get(other) is None
    assert same("abc", "abc") and not same("abc", "abd") and not same("", "")
    assert not same("abc", None)
