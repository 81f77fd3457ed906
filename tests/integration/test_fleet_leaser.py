"""The fleet's one leaser, on both engines: every site that wants work in one store call."""

from __future__ import annotations

import time
from typing import Any

import pytest
from integration_helpers import spec, until

from corral import events
from corral.auth import Principal
from corral.coordinator import Coordinator
from corral.fleet import hosts
from corral.fleet.hosts import HOST_SLOTS, FleetLeaser, FleetReporter, HostAgent, HostLink
from corral.fleet.inventory import Host
from corral.fleet.transport import Transport
from corral.worker.agent import AgentOptions


def _sites(coord: Coordinator, names: list[str]) -> tuple[FleetLeaser, dict[str, HostAgent]]:
    """Site agents whose threads are not started: the test runs the leaser's rounds itself."""
    leaser = FleetLeaser(coord)
    reporter = FleetReporter(coord)
    agents = {}
    for name in names:
        host = Host(site=name, ssh=f"nobody@{name}")
        link = HostLink(coord, host, Transport(host))
        agent = HostAgent(link, AgentOptions(slots=HOST_SLOTS), leaser, reporter)
        # the job would be sent to the host now: here it is only held
        agent._launch = lambda slot: None  # type: ignore[method-assign]
        agents[name] = agent
    leaser.agents = list(agents.values())
    return leaser, agents


def _waiting(agent: HostAgent) -> list[str]:
    """The jobs the site holds leases for."""
    return [slot.lease.job_name for slot in agent._slots.values()]


def test_one_store_call_leases_for_every_site_that_wants_work(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaser, agents = _sites(coord, ["web1", "web2", "db1"])
    # db1 is down: its next try to connect is a minute away, so it takes no jobs meanwhile
    agents["db1"].transport._retry_at = time.monotonic() + 60
    coord.submit(
        admin,
        spec({s: {"command": "true", "on": {"site": s}} for s in ("web1", "web2", "db1")}),
    )
    calls: list[Any] = []
    real = coord.store.leases.lease_many

    def counted(asks: Any, ttl: float) -> Any:
        calls.append(list(asks))
        return real(asks, ttl)

    monkeypatch.setattr(coord.store.leases, "lease_many", counted)
    leaser._lease_round()
    ids = {a.worker_id: name for name, a in agents.items()}
    assert [[ids[w] for w, _ in asks] for asks in calls] == [["web1", "web2"]]
    assert _waiting(agents["web1"]) == ["web1"]
    assert _waiting(agents["web2"]) == ["web2"]
    assert _waiting(agents["db1"]) == []
    # back up: its job is leased on the next round
    agents["db1"].transport._retry_at = 0.0
    leaser._lease_round()
    assert _waiting(agents["db1"]) == ["db1"]


def test_a_draining_site_wants_nothing_and_hands_back_what_it_is_given(
    coord: Coordinator, admin: Principal
) -> None:
    _leaser, agents = _sites(coord, ["web1"])
    agent = agents["web1"]
    assert agent.wanted() == HOST_SLOTS
    run = coord.submit(admin, spec({"a": {"command": "true", "on": {"site": "web1"}}}))
    (lease,) = coord.lease(agent.worker_id, 1)
    agent.drain()
    assert agent.wanted() == 0
    agent.accept([lease])  # leased just as the drain began
    assert not agent._slots
    assert agent._pending.released == [(lease.attempt_id, lease.token)]
    assert run.id == lease.run_id


def test_a_queue_notice_or_a_freed_slot_wakes_the_leaser(coord: Coordinator) -> None:
    leaser, _ = _sites(coord, ["web1"])
    leaser._dirty = False
    coord.hub.notify(events.QUEUE)
    assert leaser._dirty
    leaser._dirty = False
    coord.hub.notify("run:1")
    assert not leaser._dirty


def _ended_here(agent: HostAgent, outcome: str = "passed") -> None:
    """Every job the site holds ends as a host's callback would end it."""
    from corral.worker.executor import ExecResult

    for slot in list(agent._slots.values()):
        now = time.time()
        agent._ended(slot, ExecResult(outcome, 0, "", now, now, {}, 0, False))


def test_one_report_says_every_sites_ends(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaser, agents = _sites(coord, ["web1", "web2", "web3"])
    run = coord.submit(
        admin,
        spec({s: {"command": "true", "on": {"site": s}} for s in ("web1", "web2", "web3")}),
    )
    leaser._lease_round()
    for agent in agents.values():
        _ended_here(agent)
    calls: list[Any] = []
    real = coord.report

    def counted(worker_id: Any, **kwargs: Any) -> Any:
        calls.append((worker_id, len(kwargs["finished"])))
        return real(worker_id, **kwargs)

    monkeypatch.setattr(coord, "report", counted)
    reporter = agents["web1"].reporter
    reporter._report_round(beat=False)
    assert calls == [([], 3)]  # one call for the three sites; no heartbeat was due
    assert coord.store.runs.get(run.id).state.value == "passed"
    assert all(not a._slots and not a._pending for a in agents.values())


def _counting_reports(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of ends in each report the coordinator is given from now on."""
    calls: list[int] = []
    real = coord.report

    def counted(worker_id: Any, **kwargs: Any) -> Any:
        if kwargs["finished"]:
            calls.append(len(kwargs["finished"]))
        return real(worker_id, **kwargs)

    monkeypatch.setattr(coord, "report", counted)
    return calls


def _round_leased(
    coord: Coordinator,
    admin: Principal,
    monkeypatch: pytest.MonkeyPatch,
    names: list[str],
    gather: float,
) -> tuple[dict[str, HostAgent], Any]:
    """One command per site submitted and leased, with ends gathered for `gather` seconds;
    the site agents (whose reporter is not started yet) and the run."""
    monkeypatch.setattr(hosts, "GATHER_ENDS", gather)
    leaser, agents = _sites(coord, names)
    run = coord.submit(admin, spec({s: {"command": "true", "on": {"site": s}} for s in names}))
    leaser._lease_round()
    return agents, run


def test_ends_wait_for_the_jobs_still_running_and_go_out_together(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gathering far longer than the test: no timing
    agents, run = _round_leased(coord, admin, monkeypatch, ["web1", "web2", "web3"], 30.0)
    calls = _counting_reports(coord, monkeypatch)
    reporter = agents["web1"].reporter
    reporter.start()
    try:
        _ended_here(agents["web1"])
        _ended_here(agents["web2"])
        time.sleep(0.3)
        assert calls == []  # web3's job still runs: the two ends wait for it
        _ended_here(agents["web3"])  # the last: all three go out at once, in one report
        until(lambda: coord.store.runs.get(run.id).state.value == "passed")
        assert calls == [3]
    finally:
        reporter.stop()


def test_while_the_reporter_gathers_only_the_last_end_wakes_it(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents, run = _round_leased(coord, admin, monkeypatch, ["web1", "web2", "web3", "web4"], 30.0)
    reporter = agents["web1"].reporter
    wakes: list[int] = []
    real = reporter._cond.notify

    def counted(n: int = 1) -> None:
        wakes.append(n)
        real(n)

    monkeypatch.setattr(reporter._cond, "notify", counted)
    reporter.start()
    try:
        _ended_here(agents["web1"])  # wakes it: it gathers from now on
        until(lambda: reporter._gathering)
        _ended_here(agents["web2"])
        _ended_here(agents["web3"])
        time.sleep(0.1)
        assert len(wakes) == 1  # two more ends, while two jobs still ran: no wake-up
        _ended_here(agents["web4"])  # the last
        until(lambda: coord.store.runs.get(run.id).state.value == "passed")
        assert len(wakes) == 2
    finally:
        reporter.stop()


def test_an_end_waits_no_longer_than_the_gathering_time(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents, run = _round_leased(coord, admin, monkeypatch, ["web1", "web2"], 0.2)
    calls = _counting_reports(coord, monkeypatch)
    reporter = agents["web1"].reporter
    reporter.start()
    try:
        _ended_here(agents["web1"])  # web2's job runs on: web1's end goes out all the same
        until(lambda: calls == [1])
        assert coord.store.runs.get(run.id).state.value == "running"
    finally:
        reporter.stop()


def test_a_report_that_failed_is_said_again_in_the_next(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaser, agents = _sites(coord, ["web1", "web2"])
    run = coord.submit(
        admin, spec({s: {"command": "true", "on": {"site": s}} for s in ("web1", "web2")})
    )
    leaser._lease_round()
    for agent in agents.values():
        _ended_here(agent)
    real = coord.report

    def away(worker_id: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the store is away")

    monkeypatch.setattr(coord, "report", away)
    reporter = agents["web1"].reporter
    with pytest.raises(RuntimeError):
        reporter._report_round(beat=True)
    assert coord.store.runs.get(run.id).state.value != "passed"
    monkeypatch.setattr(coord, "report", real)
    reporter._report_round(beat=False)
    assert coord.store.runs.get(run.id).state.value == "passed"


def test_a_drained_site_stops_once_its_ends_are_reported(
    coord: Coordinator, admin: Principal
) -> None:
    leaser, agents = _sites(coord, ["web1"])
    agent = agents["web1"]
    coord.submit(admin, spec({"a": {"command": "true", "on": {"site": "web1"}}}))
    leaser._lease_round()
    agent.drain()
    _ended_here(agent)
    assert not agent.wait_stopped(0)
    agent.reporter._report_round(beat=False)  # the end goes out
    agent.reporter._report_round(beat=False)  # nothing held, nothing to say: stopped
    assert agent.wait_stopped(0)


def test_an_end_wakes_the_leaser_only_when_its_site_had_every_lease_it_wanted(
    coord: Coordinator, admin: Principal
) -> None:
    from corral.worker.executor import ExecResult

    leaser, agents = _sites(coord, ["web1"])
    agent = agents["web1"]
    jobs = {f"j{i}": {"command": "true", "on": {"site": "web1"}} for i in range(HOST_SLOTS)}
    coord.submit(admin, spec(jobs))
    leaser._lease_round()
    assert len(agent._slots) == HOST_SLOTS and agent.wanted() == 0

    def end_one() -> None:
        slot = next(iter(agent._slots.values()))
        now = time.time()
        agent._ended(slot, ExecResult("passed", 0, "", now, now, {}, 0, False))

    leaser._dirty = False
    end_one()  # a slot of a full site is free: there may be work for it
    assert leaser._dirty
    leaser._dirty = False
    end_one()  # it asked already and came back short; nothing new is queued
    assert not leaser._dirty


def test_a_job_for_a_host_that_cannot_be_reached_fails_with_the_reason(
    coord: Coordinator, admin: Principal
) -> None:
    """Sent from the leaser's round, started in a thread of its own as the host is not
    connected; the host is backing off, so the job ends at once, failed, saying why."""
    leaser = FleetLeaser(coord)
    host = Host(site="web1", ssh="nobody@web1")
    transport = Transport(host)
    transport._failed_locked("ssh could not connect")  # backing off: no try for a while
    transport._retry_at = time.monotonic() + 60
    agent = HostAgent(HostLink(coord, host, transport), AgentOptions(slots=HOST_SLOTS), leaser)
    coord.submit(admin, spec({"a": {"command": "true", "on": {"site": "web1"}}}))
    (lease,) = coord.lease(agent.worker_id, 1)
    agent.accept([lease])
    deadline = time.monotonic() + 10
    while not agent._pending.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    (report,) = agent._pending.finished
    assert report.outcome == "failed"
    assert "cannot reach web1" in report.reason and "next try in" in report.reason
    assert not agent._slots and agent.busy == 0


def test_a_job_a_host_cannot_take_fails_alone(
    coord: Coordinator, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaser = FleetLeaser(coord)
    host = Host(site="web1", ssh="nobody@web1")
    transport = Transport(host)
    monkeypatch.setattr(transport, "warm", lambda: True)  # started from the leaser's round
    agent = HostAgent(HostLink(coord, host, transport), AgentOptions(slots=2), leaser)
    coord.submit(
        admin,
        spec({"a": {"command": "true", "on": {"site": "web1"}, "outputs": ["out.txt"]}}),
    )
    (lease,) = coord.lease(agent.worker_id, 1)
    agent.accept([lease])
    (report,) = agent._pending.finished  # at once: nothing was sent to the host
    assert report.outcome == "failed" and "cannot take inputs or keep outputs" in report.reason
    assert not agent._slots and agent.busy == 0
