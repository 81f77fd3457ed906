"""Hosts as workers: each site of the inventory is a worker whose jobs run over SSH."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from corral import events
from corral.coordinator import Coordinator
from corral.domain.models import Lease, Report
from corral.fleet.inventory import Host, Inventory
from corral.fleet.transport import HostState, RemoteExecution, Transport
from corral.store.shared import Shared, shared_result
from corral.worker.agent import Agent, AgentOptions, Runnable, Slot
from corral.worker.executor import Chunk
from corral.worker.link import LocalLink

log = logging.getLogger("corral.fleet")

# Jobs at once on one host: the coordinator mostly waits on the network for them.
HOST_SLOTS = 8


class HostLink(LocalLink):
    """The coordinator in-process, as for the local worker."""

    def __init__(self, coordinator: Coordinator, host: Host, transport: Transport) -> None:
        super().__init__(coordinator, host.site, host.labels, HOST_SLOTS, ["command"])
        self.transport = transport


class HostAgent(Agent):
    """The worker agent of one site: heartbeats and reports as usual; runs over SSH. Its
    leases come from the fleet's one leaser (`FleetLeaser`)."""

    leases_itself = False

    def __init__(self, link: HostLink, options: AgentOptions, leaser: FleetLeaser) -> None:
        super().__init__(link, options)
        self.worker_id = link.worker_id
        self.host = link.transport.host
        self.transport = link.transport
        self.shared = Shared(link.coord.store.db)
        self.leaser = leaser

    def _may_want_more(self) -> None:
        self.leaser.poke()

    def _finished(self, slot: Slot, outcome: Report) -> None:
        # the values go with the end, in its transaction: the jobs it makes ready read them
        execution = slot.execution
        if isinstance(execution, RemoteExecution) and execution.shared:
            outcome = replace(outcome, result=shared_result(execution.shared))
        super()._finished(slot, outcome)

    def _execution(self, lease: Lease, on_output: Callable[[Chunk], None]) -> Runnable:
        return self.transport.execution(self.remote_spec(lease), on_output)

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


class FleetLeaser:
    """One thread leasing for every site at once: one store transaction for all the sites that
    want work, instead of a thread and a lease call per site woken by every submit. A host
    that is down takes no jobs until its next try to connect is due, so its queue waits
    instead of failing job after job."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.agents: list[HostAgent] = []
        self._cond = threading.Condition()
        self._dirty = True  # the queue moved, or a site may want more, since the last look
        self._stopped = False
        self._thread: threading.Thread | None = None
        coordinator.hub.listen(self._heard)

    def _heard(self, topic: str) -> None:
        if topic == events.QUEUE:
            self.poke()

    def poke(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="corral-fleet-leaser", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5.0)

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


class Fleet:
    """Every site of the inventory, each a worker with its own warm SSH connection."""

    def __init__(
        self, coordinator: Coordinator, inventory: Inventory, ssh_config: str = ""
    ) -> None:
        self.coordinator = coordinator
        self.inventory = inventory
        self.transports = {h.site: Transport(h, ssh_config) for h in inventory.hosts}
        self.agents: list[HostAgent] = []
        self.leaser = FleetLeaser(coordinator)
        self._lock = threading.Lock()

    def start(self, long_poll: float = 20.0) -> None:
        for host in self.inventory.hosts:
            link = HostLink(self.coordinator, host, self.transports[host.site])
            agent = HostAgent(
                link, AgentOptions(slots=HOST_SLOTS, long_poll=long_poll), self.leaser
            )
            agent.start()
            self.agents.append(agent)
        self.leaser.agents = list(self.agents)
        self.leaser.start()

    def stop(self, reason: str = "corral serve stopped") -> None:
        self.leaser.stop()
        for agent in self.agents:
            agent.stop(reason)
        for agent in self.agents:
            agent.wait_stopped(10.0)
        for transport in self.transports.values():
            transport.close()

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
        "latency": state.latency,
        "error": state.error,
        "retry_in": round(state.retry_in, 1),
    }
