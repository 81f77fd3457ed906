"""The Python client as a script uses it, against a real `corral serve`."""

from __future__ import annotations

from pathlib import Path

import pytest
from acceptance_helpers import Cluster

import corral

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def client_for(cluster: Cluster) -> corral.Client:
    return corral.Client(cluster.url, cluster.token)


def test_submit_wait_log_and_jobs(shared: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    with client_for(shared) as c:
        run = c.submit(
            {
                "name": "py-client-1",
                "jobs": {
                    "hello": {"command": "echo hello from corral; echo oops >&2"},
                    "after": {"command": "exit 3", "needs": ["hello"]},
                },
            }
        )
        assert isinstance(run, corral.RunHandle)
        assert run["name"] == run.name == "py-client-1"
        assert run.id > 0 and not run.ended
        assert run.wait(timeout=30, progress=True) is run
        assert run.state == "failed" and run.ended
        assert run["counts"] == {"passed": 1, "failed": 1}
        text = run.log("hello")
        assert "hello from corral\n" in text and "oops\n" in text
        states = {j["name"]: j["state"] for j in run.jobs()}
        assert states == {"hello": "passed", "after": "failed"}
        assert run.job("after")["exit_code"] == 3
    # not a terminal: the progress bar stays out of captured output
    assert "run " not in capsys.readouterr().err


def test_submit_a_toml_file_and_rerun(shared: Cluster, tmp_path: Path) -> None:
    spec = tmp_path / "build.toml"
    spec.write_text('name = "py-client-2"\n[jobs.one]\ncommand = "true"\n')
    with client_for(shared) as c:
        run = c.submit(spec)
        assert run.wait(timeout=30).state == "passed"
        again = run.rerun()
        assert again is run
        assert run.wait(timeout=30).state == "passed"
        assert run.job("one")["attempts"] == 2


def test_wait_with_a_timeout_returns_the_run_still_going(shared: Cluster) -> None:
    with client_for(shared) as c:
        run = c.submit({"name": "py-client-3", "jobs": {"slow": {"command": "sleep 30"}}})
        assert run.wait(timeout=0.5, progress=True).state in ("queued", "running")
        assert run.cancel().state == "canceled"


def test_wait_all_waits_for_many_runs_in_one_go(shared: Cluster) -> None:
    with client_for(shared) as c:
        runs = [
            c.submit({"name": f"py-client-many-{i}", "jobs": {"j": {"command": f"exit {i % 2}"}}})
            for i in range(4)
        ]
        slow = c.submit({"name": "py-client-many-slow", "jobs": {"s": {"command": "sleep 30"}}})
        ended = c.wait_all(runs, timeout=30)
        assert ended == [
            {"id": r.id, "state": "passed" if i % 2 == 0 else "failed"} for i, r in enumerate(runs)
        ]
        # with a timeout, each run as it stands when it passes
        mixed = c.wait_all([runs[0].id, slow], timeout=0.5)
        assert mixed[0] == {"id": runs[0].id, "state": "passed"}
        assert mixed[1]["id"] == slow.id and mixed[1]["state"] in ("queued", "running")
        slow.cancel()


def test_bad_toml_file_names_the_field(shared: Cluster, tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('[jobs.one]\ncommand = "true"\ntimeout = "-5m"\n')
    with client_for(shared) as c, pytest.raises(corral.InvalidRunSpec) as info:
        c.submit(spec)
    assert "jobs.one.timeout" in str(info.value)
