"""Runs on both engines: needs DAGs and hooks, cancel, rerun, fanout and selectors."""

from __future__ import annotations

import pytest
from integration_helpers import join, report, snapshot, spec, states

from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.domain.models import Lease, Worker
from corral.domain.states import JobState, RunState
from corral.errors import Conflict, InvalidRunSpec, LeaseLost
from corral.store.leases import Ended


def lease_all(coord: Coordinator, w: Worker) -> dict[str, Lease]:
    return {
        (x.job_name + (f"[{x.instance}]" if x.instance else "")): x for x in coord.lease(w.id, 100)
    }


def finish(coord: Coordinator, w: Worker, lease: Lease, outcome: str = "passed") -> Ended:
    (result,) = coord.finish(w.id, [report(lease, outcome, 0 if outcome == "passed" else 1)])
    assert isinstance(result, Ended), result
    return result


PIPELINE = {
    "build": {"command": "make"},
    "test": {"command": "make test", "needs": ["build"]},
    "deploy": {"command": "./deploy", "needs": ["test"]},
    "smoke": {"command": "./smoke", "needs": ["deploy"]},
    "alert": {"command": "./alert", "needs": ["test"], "when": "failure"},
    "report": {"command": "./report", "needs": ["test"], "when": "always"},
    "after-alert": {"command": "./x", "needs": ["alert"]},
}


def test_a_failure_runs_the_hook_and_skips_the_rest(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec(PIPELINE))
    assert states(coord, run.id) == {
        "build": "queued",
        "test": "blocked",
        "deploy": "blocked",
        "smoke": "blocked",
        "alert": "blocked",
        "report": "blocked",
        "after-alert": "blocked",
    }
    leases = lease_all(coord, w)
    assert list(leases) == ["build"]
    ended = finish(coord, w, leases["build"])
    test_job = coord.store.runs.job(run.id, "test")
    assert ended.queued == (test_job.id,)

    (result,) = [finish(coord, w, x, "failed") for x in lease_all(coord, w).values()]
    assert result.state is JobState.FAILED
    got = states(coord, run.id)
    assert got == {
        "build": "passed",
        "test": "failed",
        "deploy": "skipped",
        "smoke": "skipped",  # skipped in cascade
        "alert": "queued",
        "report": "queued",
        "after-alert": "blocked",
    }
    assert "when" in coord.store.runs.job(run.id, "smoke").reason
    assert coord.store.runs.get(run.id).state is RunState.RUNNING

    leases = lease_all(coord, w)
    assert sorted(leases) == ["alert", "report"]
    for x in leases.values():
        finish(coord, w, x)
    (x,) = lease_all(coord, w).values()
    assert x.job_name == "after-alert"
    finish(coord, w, x)
    run = coord.store.runs.get(run.id)
    assert run.state is RunState.FAILED  # the hook ran, the test still failed
    assert run.counts == {"passed": 4, "failed": 1, "skipped": 2}
    assert run.ended_at is not None


def test_a_success_skips_the_hook_and_what_follows_it_still_runs(
    coord: Coordinator, admin: Principal
) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec(PIPELINE))
    for _ in range(10):
        leases = lease_all(coord, w)
        if not leases:
            break
        for x in leases.values():
            finish(coord, w, x)
    assert states(coord, run.id) == {
        "build": "passed",
        "test": "passed",
        "deploy": "passed",
        "smoke": "passed",
        "alert": "skipped",
        "report": "passed",
        "after-alert": "passed",  # a skipped need counts as fine
    }
    assert coord.store.runs.get(run.id).state is RunState.PASSED


def test_sequential_runs_jobs_in_file_order(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(
        admin, spec({n: {"command": n} for n in ("one", "two", "three")}, schedule="sequential")
    )
    order = []
    for _ in range(5):
        leases = lease_all(coord, w)
        assert len(leases) <= 1
        for x in leases.values():
            order.append(x.job_name)
            finish(coord, w, x)
    assert order == ["one", "two", "three"]
    assert coord.store.runs.get(run.id).state is RunState.PASSED


def test_a_failure_stops_a_sequential_run(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(
        admin, spec({n: {"command": n} for n in ("one", "two", "three")}, schedule="sequential")
    )
    finish(coord, w, lease_all(coord, w)["one"], "failed")
    assert states(coord, run.id) == {"one": "failed", "two": "skipped", "three": "skipped"}
    assert coord.store.runs.get(run.id).state is RunState.FAILED


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_a_run_with_leased_jobs(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(
        admin,
        spec(
            {
                "a": {"command": "x"},
                "b": {"command": "x"},
                "c": {"command": "x"},
                "d": {"command": "x", "needs": ["a"]},
                "done": {"command": "x"},
            }
        ),
    )
    leases = lease_all(coord, w)
    finish(coord, w, leases.pop("done"))
    coord.start(w.id, [(leases["a"].attempt_id, leases["a"].token, 1.0)])  # a runs, b is leased
    c_job = coord.store.runs.job(run.id, "c")
    finish(coord, w, leases.pop("c"), "failed")  # c ended before the cancel
    assert coord.store.runs.job_by_id(c_job.id).state is JobState.FAILED

    canceled = coord.cancel(admin, str(run.id))
    assert canceled.state is RunState.FAILED  # c failed: a failure outranks a cancel
    assert states(coord, run.id) == {
        "a": "canceled",
        "b": "canceled",
        "c": "failed",
        "d": "canceled",
        "done": "passed",
    }
    assert "canceled by test-admin" in coord.store.runs.job(run.id, "d").reason
    for name in ("a", "b"):
        (attempt,) = coord.store.runs.attempts(coord.store.runs.job(run.id, name).id)
        assert attempt.state == "canceled" and attempt.ended_at is not None

    # the workers' tokens are dead now, and their reports change nothing
    for name, lease in leases.items():
        job_id = coord.store.runs.job(run.id, name).id
        before = snapshot(coord.store, job_id)
        (result,) = coord.finish(w.id, [report(lease)])
        assert isinstance(result, LeaseLost), name
        assert coord.heartbeat(w.id, [(lease.attempt_id, lease.token)]) == [lease.attempt_id]
        assert coord.store.logs.append([]) == []
        assert snapshot(coord.store, job_id) == before
    assert coord.lease(w.id, 10) == []
    again = coord.cancel(admin, str(run.id))  # a second cancel changes nothing
    assert again == coord.store.runs.get(run.id)


def test_cancel_a_run_that_had_only_passes(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec({"a": {"command": "x"}, "b": {"command": "x"}}))
    leases = lease_all(coord, w)
    finish(coord, w, leases["a"])
    assert coord.cancel(admin, run.name).state is RunState.CANCELED
    assert states(coord, run.id) == {"a": "passed", "b": "canceled"}


def test_cancel_one_job_fires_its_failure_hook(coord: Coordinator, admin: Principal) -> None:
    join(coord, admin, "w1")
    run = coord.submit(
        admin,
        spec(
            {
                "a": {"command": "x"},
                "next": {"command": "x", "needs": ["a"]},
                "hook": {"command": "x", "needs": ["a"], "when": "failure"},
            }
        ),
    )
    coord.cancel(admin, str(run.id), "a")
    assert states(coord, run.id) == {"a": "canceled", "next": "skipped", "hook": "queued"}


# -- rerun -----------------------------------------------------------------------------------


def drive(coord: Coordinator, w: Worker, outcomes: dict[str, str] | None = None) -> list[str]:
    """Lease and finish until nothing is left; returns the labels run, in order."""
    done = []
    for _ in range(20):
        leases = lease_all(coord, w)
        if not leases:
            return done
        for label, x in leases.items():
            finish(coord, w, x, (outcomes or {}).get(label, "passed"))
            done.append(label)
    raise AssertionError("did not settle")


DIAMOND = {
    "a": {"command": "x"},
    "b": {"command": "x", "needs": ["a"]},
    "c": {"command": "x", "needs": ["b"]},
    "side": {"command": "x"},
}


def test_rerun_all(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec(DIAMOND))
    drive(coord, w)
    assert coord.store.runs.get(run.id).state is RunState.PASSED
    with pytest.raises(Conflict, match="no failed jobs"):
        coord.rerun(admin, str(run.id), failed_only=True)

    again = coord.rerun(admin, str(run.id), failed_only=False)
    assert again.state is RunState.RUNNING
    assert again.ended_at is None
    assert states(coord, run.id) == {
        "a": "queued",
        "b": "blocked",
        "c": "blocked",
        "side": "queued",
    }
    a = coord.store.runs.job(run.id, "a")
    assert (a.exit_code, a.ended_at, a.started_at, a.attempts) == (None, None, None, 1)
    leases = lease_all(coord, w)
    assert sorted(leases) == ["a", "side"]
    assert {x.number for x in leases.values()} == {2}  # attempt numbers continue
    for x in leases.values():
        finish(coord, w, x)
    assert drive(coord, w) == ["b", "c"]
    run = coord.store.runs.get(run.id)
    assert run.state is RunState.PASSED
    assert run.counts == {"passed": 4}
    assert [x.number for x in coord.store.runs.attempts(a.id)] == [1, 2]


def test_rerun_failed_resets_the_failed_jobs_and_their_downstream(
    coord: Coordinator, admin: Principal
) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec(DIAMOND))
    drive(coord, w, {"b": "failed"})
    assert states(coord, run.id) == {"a": "passed", "b": "failed", "c": "skipped", "side": "passed"}
    assert coord.store.runs.get(run.id).state is RunState.FAILED
    a_before = snapshot(coord.store, coord.store.runs.job(run.id, "a").id)

    again = coord.rerun(admin, run.name, failed_only=True)
    assert again.state is RunState.RUNNING
    # b's need (a) is outside the rerun and passed: b is ready at once; c waits on b
    assert states(coord, run.id) == {"a": "passed", "b": "queued", "c": "blocked", "side": "passed"}
    assert snapshot(coord.store, coord.store.runs.job(run.id, "a").id) == a_before
    leases = lease_all(coord, w)
    assert list(leases) == ["b"]
    assert leases["b"].number == 2
    finish(coord, w, leases["b"])
    assert drive(coord, w) == ["c"]
    run = coord.store.runs.get(run.id)
    assert run.state is RunState.PASSED
    assert run.counts == {"passed": 4}
    b = coord.store.runs.job(run.id, "b")
    assert [(x.number, x.state) for x in coord.store.runs.attempts(b.id)] == [
        (1, "failed"),
        (2, "passed"),
    ]


def test_rerun_failed_after_cancel(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec(DIAMOND))
    finish(coord, w, lease_all(coord, w)["a"])
    coord.cancel(admin, str(run.id))
    assert coord.store.runs.get(run.id).state is RunState.CANCELED
    coord.rerun(admin, str(run.id), failed_only=True)
    assert states(coord, run.id) == {"a": "passed", "b": "queued", "c": "blocked", "side": "queued"}
    drive(coord, w)
    assert coord.store.runs.get(run.id).state is RunState.PASSED


def test_rerun_of_a_running_run_is_refused(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    run = coord.submit(admin, spec(DIAMOND))
    lease_all(coord, w)
    before = states(coord, run.id)
    with pytest.raises(Conflict, match="still running"):
        coord.rerun(admin, str(run.id), failed_only=False)
    assert states(coord, run.id) == before


# -- fanout and selectors --------------------------------------------------------------------


def test_fanout_each_is_one_copy_per_matching_worker(coord: Coordinator, admin: Principal) -> None:
    web1 = join(coord, admin, "web1", role="app", platform="linux")
    web2 = join(coord, admin, "web2", role="app", platform="linux")
    mac = join(coord, admin, "mac", role="app", platform="macos")
    db = join(coord, admin, "db", role="db", platform="linux")
    run = coord.submit(
        admin,
        spec(
            {
                "deploy": {"command": "./deploy", "on": {"role": "app"}, "fanout": "each"},
                "snapshot": {"command": "./snap", "needs": ["deploy"]},
            }
        ),
    )
    assert states(coord, run.id) == {
        "deploy[mac]": "queued",
        "deploy[web1]": "queued",
        "deploy[web2]": "queued",
        "snapshot": "blocked",
    }
    assert coord.lease(db.id, 10) == []  # wrong role, and the copies are pinned
    for w in (web1, web2, mac):
        leases = coord.lease(w.id, 10)
        assert [(x.job_name, x.instance) for x in leases] == [("deploy", w.name)]
        assert coord.lease(w.id, 10) == []  # each worker gets its copy only
        if w is not mac:
            finish(coord, w, leases[0])
            assert states(coord, run.id)["snapshot"] == "blocked"  # waits for every copy
        else:
            finish(coord, w, leases[0])
    assert states(coord, run.id)["snapshot"] == "queued"
    with pytest.raises(Exception, match="copy per worker"):
        coord.store.runs.job(run.id, "deploy")
    assert coord.store.runs.job(run.id, "deploy[web2]").worker == "web2"


def test_fanout_each_with_no_matching_worker_is_refused(
    coord: Coordinator, admin: Principal
) -> None:
    join(coord, admin, "web1", role="app")
    with pytest.raises(InvalidRunSpec) as info:
        coord.submit(
            admin, spec({"deploy": {"command": "x", "on": {"role": "db"}, "fanout": "each"}})
        )
    assert info.value.field == "jobs.deploy.fanout"
    assert coord.store.runs.list(None) == []


def test_a_selector_keeps_jobs_off_workers_without_its_labels(
    coord: Coordinator, admin: Principal
) -> None:
    linux = join(coord, admin, "linux1", platform="linux", arch="x86_64")
    mac = join(coord, admin, "mac1", platform="macos", arch="arm64")
    bare = join(coord, admin, "bare")  # no labels at all
    jobs: dict[str, dict[str, object]] = {}
    for i in range(15):
        jobs[f"l{i}"] = {"command": "x", "on": {"platform": "linux"}}
        jobs[f"m{i}"] = {"command": "x", "on": {"platform": "macos"}}
        jobs[f"a{i}"] = {"command": "x"}
    jobs["arm-linux"] = {"command": "x", "on": {"platform": "linux", "arch": "arm64"}}
    jobs["x86-linux"] = {"command": "x", "on": {"platform": "linux", "arch": "x86_64"}}
    run = coord.submit(admin, spec(jobs))

    got_mac = {x.job_name for x in coord.lease(mac.id, 1000)}
    assert got_mac == {f"m{i}" for i in range(15)} | {f"a{i}" for i in range(15)}
    assert coord.lease(bare.id, 1000) == []  # only jobs without a selector, and mac took them
    got_linux = {x.job_name for x in coord.lease(linux.id, 1000)}
    assert got_linux == {f"l{i}" for i in range(15)} | {"x86-linux"}
    assert states(coord, run.id)["arm-linux"] == "queued"  # nobody has both labels


def test_a_worker_without_labels_takes_only_unselective_jobs(
    coord: Coordinator, admin: Principal
) -> None:
    bare = join(coord, admin, "bare")
    coord.submit(admin, spec({"any": {"command": "x"}, "lin": {"command": "x", "on": {"os": "l"}}}))
    assert [x.job_name for x in coord.lease(bare.id, 10)] == ["any"]


def test_a_worker_gets_only_kinds_it_allows(coord: Coordinator, admin: Principal) -> None:
    tasks_only = join(coord, admin, "t", allow=("task",))
    cmd = join(coord, admin, "c", allow=("command",))
    coord.submit(admin, spec({"a": {"command": "x"}}))
    assert coord.lease(tasks_only.id, 10) == []
    assert [x.job_name for x in coord.lease(cmd.id, 10)] == ["a"]


def test_a_draining_worker_gets_nothing(coord: Coordinator, admin: Principal) -> None:
    w = join(coord, admin, "w1")
    coord.submit(admin, spec({"a": {"command": "x"}}))
    coord.drain(admin, "w1")
    assert coord.lease(w.id, 10) == []
    coord.drain(admin, "w1", draining=False)
    assert [x.job_name for x in coord.lease(w.id, 10)] == ["a"]


def test_states_of_many_runs_read_in_chunks_among_the_projects_a_token_sees(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.errors import NotFound
    from corral.store import runs as runs_module

    monkeypatch.setattr(runs_module, "STATES_AT_ONCE", 2)  # several statements for five runs
    w = join(coord, admin, "w1")
    made = [coord.submit(admin, spec({"a": {"command": "true"}})).id for _ in range(5)]
    (lease,) = coord.lease(w.id, 1)
    finish(coord, w, lease)
    got = coord.run_states(admin, [made[4], made[0], made[4], *made[1:4]])
    assert got == {
        made[0]: RunState.PASSED,
        **{i: RunState.QUEUED for i in made[1:]},
    }
    with pytest.raises(NotFound, match=f"no run {made[-1] + 100}"):
        coord.store.runs.states([made[0], made[-1] + 100], None)
    # a token of another project sees none of them
    _, secret = coord.create_token(admin, "reader", "team-x")
    reader = coord.authenticate(secret)
    with pytest.raises(NotFound, match=f"no run {made[2]}"):
        coord.run_states(reader, [made[2]])
