"""Hosts as workers: each site of the inventory is a worker whose jobs run over SSH."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from corral import events
from corral.coordinator import Coordinator
from corral.domain.models import Lease, Report
from corral.fleet.inventory import Host, Inventory
from corral.fleet.transport import HostState, RemoteExecution, Transport
from corral.store.shared import Shared, shared_result
from corral.worker.agent import LOG_FLUSH_INTERVAL, Agent, AgentOptions, Slot
from corral.worker.link import Batch, LocalLink

log = logging.getLogger("corral.fleet")

# Jobs at once on one host: the coordinator mostly waits on the network for them.
HOST_SLOTS = 8
# How long an end may wait for the ends of jobs still running on other sites: a round of
# commands on many hosts is then recorded in one or two store transactions, not one per
# handful of ends; the last end of all goes out at once.
GATHER_ENDS = 0.02


class HostLink(LocalLink):
    """The coordinator in-process, as for the local worker."""

    def __init__(self, coordinator: Coordinator, host: Host, transport: Transport) -> None:
        super().__init__(coordinator, host.site, host.labels, HOST_SLOTS, ["command"])
        self.transport = transport

    def may_hold_end(self, run_id: int) -> bool:
        """Not asked: a site's ends go to the fleet's reporter, which gathers a round's ends by
        a rule of its own (`FleetReporter._gather`), so the coordinator's answer would go
        unused on every end."""
        return False


class HostAgent(Agent):
    """The worker agent of one site; runs over SSH. Its leases come from the fleet's one
    leaser (`FleetLeaser`), and its starts, logs, heartbeats and ends go out in the fleet's
    one report (`FleetReporter`)."""

    leases_itself = False
    reports_itself = False
    runs_in_threads = False

    def __init__(
        self,
        link: HostLink,
        options: AgentOptions,
        leaser: FleetLeaser,
        reporter: FleetReporter | None = None,
    ) -> None:
        super().__init__(link, options)
        self.worker_id = link.worker_id
        self.host = link.transport.host
        self.transport = link.transport
        self.shared = Shared(link.coord.store.db)
        self.leaser = leaser
        self._full = False  # holds every lease it wants (the leaser passes it over)
        self.reporter = reporter or FleetReporter(link.coord)
        self.reporter.agents.append(self)

    def _may_want_more(self) -> None:
        # The leaser needs waking only when this site had all the leases it wanted: else its
        # last ask came back short and nothing new is queued (new work wakes the leaser itself)
        if self._full and self._wanted_locked():
            self._full = False
            self.leaser.poke()
        self.reporter.ended()

    def _wake_all(self) -> None:
        super()._wake_all()
        self.reporter.poke()

    def accept(self, leases: list[Lease]) -> None:
        """Leases made for this site: each job is sent to the host at once, from the leaser's
        thread, and ends in a callback (no thread per running job). A host not connected yet
        is connected to from a thread of its own, so that one slow host holds up no other."""
        with self._lock:
            if self._draining:
                self._pending.released.extend((x.attempt_id, x.token) for x in leases)
                self._wake_all()
                return
            slots = []
            for lease in leases:
                slot = Slot(lease)
                self._slots[lease.attempt_id] = slot
                self._running += 1
                slots.append(slot)
            self._full = not self._wanted_locked()
        warm = self.transport.warm()
        for slot in slots:
            if warm:
                self._launch(slot)
            else:
                threading.Thread(
                    target=self._launch, args=(slot,), name="corral-connect", daemon=True
                ).start()

    def _launch(self, slot: Slot) -> None:
        lease = slot.lease
        try:
            execution = self.transport.execution(
                self.remote_spec(lease), lambda c: self._output(slot, c)
            )
            slot.execution = execution
            if slot.stop_reason:
                execution.kill(slot.stop_reason)
            execution.begin(lambda result: self._ended(slot, result))
        except Exception as exc:  # a spec the host cannot take, or a bug: the job fails alone
            if not isinstance(exc, ValueError):
                log.exception("starting a job on %s failed", self.host.site)
            self._finished(
                slot, Report(lease.attempt_id, lease.token, "failed", None, str(exc), time.time())
            )

    def _finished(self, slot: Slot, outcome: Report) -> None:
        # the values go with the end, in its transaction: the jobs it makes ready read them
        execution = slot.execution
        if isinstance(execution, RemoteExecution) and execution.shared:
            outcome = replace(outcome, result=shared_result(execution.shared))
        super()._finished(slot, outcome)

    def remote_spec(self, lease: Lease) -> dict[str, Any]:
        """What the host's side needs: the command, its environment, its limits."""
        payload = lease.payload
        if payload.get("kind") != "command":
            raise ValueError(f"a fleet host cannot run {payload.get('kind')} jobs")
        if payload.get("inputs") or payload.get("outputs") or payload.get("stdout"):
            raise ValueError("a fleet host cannot take inputs or keep outputs yet")
        env = dict(self.host.vars)
        if lease.run_shared:
            # a read per job only for runs whose jobs publish values
            env.update(self.shared.env_for(lease.run_id, lease.instance))
        env.update(payload.get("env") or {})
        # secrets as on any worker: the job's named ones in its env, the sudo password only
        # for its `sudo` (worker/askpass.py, on the host), all of them masked in its output
        names = payload.get("secrets") or []
        values = payload.get("secret_values") or {}
        sudo = payload.get("sudo")
        missing = [n for n in [*names, *([sudo] if sudo else [])] if n not in values]
        if missing:
            raise ValueError(f"the server holds no secret {', '.join(missing)} any more")
        env.update({n: values[n] for n in names})
        env.update(
            {
                "CORRAL_RUN": str(lease.run_id),
                "CORRAL_RUN_NAME": lease.run_name,
                "CORRAL_JOB": lease.job_name,
                "CORRAL_ATTEMPT": str(lease.number),
                "CORRAL_WORKER": self.host.site,
                "CORRAL_SITE": self.host.site,
                "CORRAL_ROLES": ",".join(self.host.roles),
            }
        )
        return {
            "command": payload.get("command"),
            "argv": payload.get("argv"),
            "env": env,
            "timeout": lease.timeout,
            "grace": self.options.grace,
            "log_limit": self.options.log_limit,
            "mask": [values[n] for n in names] + ([values[sudo]] if sudo else []),
            "sudo_password": values[sudo] if sudo else None,
        }


class _FleetThread(ABC):
    """A thread of the fleet's that works for every site at once: poked when there may be
    something to do (`_dirty`), stopped once."""

    thread_name = ""

    def __init__(self, coordinator: Coordinator, dirty: bool) -> None:
        self.coordinator = coordinator
        self.agents: list[HostAgent] = []
        self._cond = threading.Condition()
        self._dirty = dirty
        self._stopped = False
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5.0)

    @abstractmethod
    def _loop(self) -> None:
        """The thread's work, until stopped."""


class FleetLeaser(_FleetThread):
    """One thread leasing for every site at once: one store transaction for all the sites that
    want work, instead of a thread and a lease call per site woken by every submit. A host
    that is down takes no jobs until its next try to connect is due, so its queue waits
    instead of failing job after job."""

    thread_name = "corral-fleet-leaser"

    def __init__(self, coordinator: Coordinator) -> None:
        # dirty from the start: the queue may hold work already
        super().__init__(coordinator, dirty=True)
        coordinator.hub.listen(self._heard)

    def _heard(self, topic: str) -> None:
        if topic == events.QUEUE:
            self.poke()

    def _loop(self) -> None:
        while True:
            # reckoned before taking the condition: an agent pokes it holding its own lock
            wait = self._slice()
            with self._cond:
                if not self._dirty and not self._stopped:
                    # in slices, as a lease long-poll: work through another coordinator, a
                    # retry's back-off, or a host's next try to connect wakes no one here
                    self._cond.wait(wait)
                if self._stopped:
                    return
                self._dirty = False
            try:
                self._lease_round()
            except Exception as exc:  # the store may be away for a moment: try again soon
                log.error("leasing for the fleet failed: %s", exc)
                time.sleep(1.0)
                self.poke()

    def _slice(self) -> float:
        backoffs = [
            left for a in self.agents if (left := a.transport.backoff_left()) > 0 and a.wanted()
        ]
        return max(0.01, min([self.coordinator.queue_wait(5.0), *backoffs]))

    def _lease_round(self) -> None:
        wanting = [
            (a, n) for a in self.agents if (n := a.wanted()) > 0 and a.transport.backoff_left() <= 0
        ]
        if not wanting:
            return
        found = self.coordinator.lease_for([(a.worker_id, n) for a, n in wanting])
        for (agent, _), got in zip(wanting, found, strict=True):
            if isinstance(got, Exception):
                log.error("leasing for %s failed: %s", agent.host.site, got)
                continue
            if got:
                agent.accept(got)


class FleetReporter(_FleetThread):
    """One thread reporting for every site at once: what all of them have to say (starts,
    logs, heartbeats, ends, releases) in one call to the coordinator, instead of a thread and
    a report per site woken at each job's end. Ends that come in while a report is being
    made go out together in the next one. Stopped after the agents (nothing more is said)."""

    thread_name = "corral-fleet-reporter"

    def __init__(self, coordinator: Coordinator) -> None:
        super().__init__(coordinator, dirty=False)
        self._gathering = False  # waiting in `_gather` for the round's other ends

    def ended(self) -> None:
        """A site's job ended (or left its slot). While the reporter gathers a round's ends,
        only the last one wakes it: the others are in its report all the same, and a wake-up
        per end costs it a thread switch each time."""
        with self._cond:
            self._dirty = True
            if not self._gathering or not any(a.running() for a in self.agents):
                self._cond.notify()

    def _loop(self) -> None:
        interval = min((a.heartbeat_interval() for a in self.agents), default=10.0)
        next_beat = time.monotonic() + interval
        while True:
            with self._cond:
                wait = min(next_beat - time.monotonic(), LOG_FLUSH_INTERVAL)
                if not self._dirty and not self._stopped and wait > 0:
                    self._cond.wait(wait)
                if self._dirty:  # poked: a job ended (or an agent is leaving)
                    self._gather()
                if self._stopped:
                    return
                self._dirty = False
            now = time.monotonic()
            beat = now >= next_beat
            if beat:
                next_beat = now + interval
            try:
                self._report_round(beat)
            except Exception as exc:  # the store may be away for a moment: try again soon
                log.error("reporting for the fleet failed: %s", exc)
                time.sleep(0.5)
                self.poke()

    def _gather(self) -> None:
        """Wait (holding the condition) while jobs still run elsewhere, up to GATHER_ENDS:
        the last end wakes it (`ended`), as does a stop."""
        until = time.monotonic() + GATHER_ENDS
        self._gathering = True
        try:
            while not self._stopped and any(a.running() for a in self.agents):
                left = until - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)
        finally:
            self._gathering = False

    def _report_round(self, beat: bool) -> None:
        batches: list[tuple[HostAgent, Batch]] = []
        for agent in self.agents:
            if agent.wait_stopped(0):
                continue
            batch, done = agent.collect(beat)
            if done:
                agent.stop_reporting()
            elif batch:
                batches.append((agent, batch))
        if not batches:
            return
        try:
            lost, _ = self.coordinator.report(
                [a.worker_id for a, b in batches if b.heartbeats],
                started=[x for _, b in batches for x in b.started],
                logs=[x for _, b in batches for x in b.logs],
                heartbeats=[x for _, b in batches for x in b.heartbeats],
                finished=[x for _, b in batches for x in b.finished],
                released=[x for _, b in batches for x in b.released],
                reason="the worker was stopped before the job ended",
            )
        except Exception:
            # nothing of it was lost: each agent says it again in the next round
            for agent, batch in batches:
                agent.say_again(batch)
            raise
        if lost:
            for agent, _ in batches:
                agent.lost(lost)


class Fleet:
    """Every site of the inventory, each a worker with its own warm SSH connection."""

    def __init__(
        self, coordinator: Coordinator, inventory: Inventory, ssh_config: str = ""
    ) -> None:
        self.coordinator = coordinator
        self.inventory = inventory
        # each host's ssh writes its own messages to a file here, read back for the reason
        # a job or a check gives (the server's stderr would hold them, unattributed)
        self.ssh_logs = tempfile.mkdtemp(prefix="corral-ssh-")
        self.transports = {
            h.site: Transport(h, ssh_config, os.path.join(self.ssh_logs, f"{h.site}.log"))
            for h in inventory.hosts
        }
        self.agents: list[HostAgent] = []
        self.leaser = FleetLeaser(coordinator)
        self.reporter = FleetReporter(coordinator)
        self._lock = threading.Lock()

    def start(self, long_poll: float = 20.0) -> None:
        for host in self.inventory.hosts:
            link = HostLink(self.coordinator, host, self.transports[host.site])
            agent = HostAgent(
                link,
                AgentOptions(slots=HOST_SLOTS, long_poll=long_poll),
                self.leaser,
                self.reporter,
            )
            agent.start()
            self.agents.append(agent)
        self.leaser.agents = list(self.agents)
        self.leaser.start()
        self.reporter.start()

    def stop(self, reason: str = "corral serve stopped") -> None:
        self.leaser.stop()
        for agent in self.agents:
            agent.stop(reason)
        for agent in self.agents:
            agent.wait_stopped(10.0)
        self.reporter.stop()
        for transport in self.transports.values():
            transport.close()
        shutil.rmtree(self.ssh_logs, ignore_errors=True)

    def states(self) -> list[tuple[Host, HostState]]:
        return [(h, self.transports[h.site].state()) for h in self.inventory.hosts]

    def check(self, sites: Sequence[str] = ()) -> list[tuple[Host, HostState]]:
        """Connect to each host (all at once) and time a round trip."""
        hosts = [h for h in self.inventory.hosts if not sites or h.site in sites]
        if not hosts:
            return []
        with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:
            found = list(pool.map(lambda h: self.transports[h.site].check(), hosts))
        return list(zip(hosts, found, strict=True))


def host_json(host: Host, state: HostState) -> dict[str, Any]:
    if state.connected:
        reach = "connected"
    elif state.error:
        reach = "unreachable"
    else:
        reach = "not connected yet"
    return {
        "site": host.site,
        "ssh": host.ssh,
        "port": host.port,
        "roles": list(host.roles),
        "reachability": reach,
        "python": state.python,
        "platform": state.platform,
        "containment": state.containment,
        "latency": state.latency,
        "error": state.error,
        "retry_in": round(state.retry_in, 1),
    }
