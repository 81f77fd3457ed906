"""Project isolation through the CLI and HTTP: a token of project A sees nothing of default."""

from __future__ import annotations

import json

import pytest
from acceptance_helpers import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def test_project_reader_cannot_see_or_touch_other_projects(shared: Cluster) -> None:
    made = shared.cli("run", "--detach", "--name", "private", "--", "echo secret-output")
    assert made.code == 0, made
    run_id = int(made.out.strip())
    shared.wait_run(run_id)

    created = shared.cli("token", "create", "--project", "team-a", "--read-only")
    assert created.code == 0, created
    reader = created.out.strip()
    assert "reader of project team-a" in created.err
    created = shared.cli("token", "create", "--for-project", "team-a")
    assert created.code == 0, created
    submitter = created.out.strip()
    before = shared.runs()

    # the CLI: the default project's run looks like one that does not exist
    hidden = f"no run '{run_id}'"
    missing, shown, logs, listing, submitted = shared.cli_many(
        ("status", "999999"),
        ("status", str(run_id)),
        ("logs", f"{run_id}/job"),
        ("status", "--json"),
        ("run", "--", "echo", "hi"),
        token=reader,
    )
    assert missing.code == 2 and "no run '999999'" in missing.err, missing
    assert shown.code == 2 and hidden in shown.err, shown
    assert "private" not in shown.out + shown.err
    assert logs.code == 2 and "secret-output" not in logs.out + logs.err, logs
    assert listing.code == 0 and json.loads(listing.out) == [], listing
    assert submitted.code == 2 and "cannot submit" in submitted.err, submitted
    # a submitter of team-a may act, but not on what it cannot see
    canceled, rerun, listing = shared.cli_many(
        ("cancel", str(run_id)), ("rerun", str(run_id)), ("status", "--json"), token=submitter
    )
    assert canceled.code == 2 and hidden in canceled.err, canceled
    assert rerun.code == 2 and hidden in rerun.err, rerun
    assert listing.code == 0 and json.loads(listing.out) == [], listing

    # raw HTTP: 404 for what is not theirs, 403 for what a reader may not do
    http = shared.http(token=reader)
    for path in (
        f"/api/v1/runs/{run_id}",
        f"/api/v1/runs/{run_id}/jobs/job",
        f"/api/v1/runs/{run_id}/jobs/job/log",
        f"/api/v1/runs/{run_id}/wait",
    ):
        answer = http.get(path, params={"timeout": 0} if path.endswith("wait") else None)
        assert answer.status_code == 404, f"{path}: {answer.text}"
        assert "secret" not in answer.text and "private" not in answer.text
    assert http.get("/api/v1/runs", params={"project": "default"}).status_code == 404
    assert http.get("/api/v1/runs").json() == {"runs": []}

    body = {"name": "sneaky", "jobs": {"a": {"command": "true"}}}
    answer = http.post("/api/v1/runs", json=body)
    assert answer.status_code == 403 and "cannot submit" in answer.json()["error"]["message"]
    answer = http.post("/api/v1/runs", params={"project": "default"}, json=body)
    assert answer.status_code == 404, answer.text
    assert http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 404
    assert http.post(f"/api/v1/runs/{run_id}/rerun", json={}).status_code == 404
    assert http.post("/api/v1/tokens", json={"kind": "admin"}).status_code == 403
    assert http.get("/api/v1/tokens").status_code == 403
    assert http.post("/api/v1/workers/no-one/drain", json={}).status_code == 403

    # nothing changed: the run is as it was, and no run was added
    assert shared.runs() == before
    assert shared.run(run_id)["state"] == "passed"
