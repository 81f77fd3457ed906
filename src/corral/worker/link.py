"""How a worker agent talks to its coordinator: over HTTP, or by direct calls inside `corral serve`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from corral.domain.models import Lease


@dataclass(frozen=True)
class Outcome:
    """An attempt's end, as the worker reports it."""

    attempt_id: int
    token: str
    outcome: str  # passed | failed | timed_out
    exit_code: int | None
    reason: str
    started_at: float
    resources: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    attempt_id: int
    token: str
    seq: int
    stream: str
    ts: float
    data: str


@dataclass
class Batch:
    """What the agent has to say since its last report."""

    started: list[tuple[int, str, float]] = field(default_factory=list)
    heartbeats: list[tuple[int, str]] = field(default_factory=list)
    logs: list[Chunk] = field(default_factory=list)
    finished: list[Outcome] = field(default_factory=list)
    released: list[tuple[int, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.started or self.heartbeats or self.logs or self.finished or self.released)


@dataclass(frozen=True)
class Answer:
    lost: Sequence[int]  # attempts this worker must stop: canceled, expired, or not its own
    draining: bool


class Link(Protocol):
    worker_name: str
    lease_ttl: float

    def lease(self, max_jobs: int, wait: float) -> list[Lease]: ...

    def report(self, batch: Batch, reason: str = "") -> Answer: ...

    def drain(self) -> None: ...

    def close(self) -> None: ...


class LocalLink:
    """Direct calls to the coordinator in the same process: no HTTP on the embedded hot path."""

    def __init__(
        self,
        coordinator: object,
        name: str,
        labels: dict[str, str],
        slots: int,
        allow: Sequence[str],
    ) -> None:
        from corral.auth import Principal
        from corral.coordinator import Coordinator

        assert isinstance(coordinator, Coordinator)
        self.coord = coordinator
        system = Principal(token_id=0, kind="admin", name="corral serve")
        worker, _secret = coordinator.join(system, name, labels, slots, list(allow), local=True)
        self.worker_id = worker.id
        self.worker_name = worker.name
        self.lease_ttl = coordinator.lease_ttl

    def lease(self, max_jobs: int, wait: float) -> list[Lease]:
        return self.coord.lease_wait(self.worker_id, max_jobs, wait)

    def report(self, batch: Batch, reason: str = "") -> Answer:
        from corral.errors import LeaseLost
        from corral.store.leases import Report
        from corral.store.logs import Upload

        coord, wid = self.coord, self.worker_id
        lost: set[int] = set()
        if batch.started:
            lost |= set(coord.start(wid, batch.started))
        if batch.logs:
            uploads = [
                Upload(c.attempt_id, c.token, c.seq, c.stream, c.ts, c.data) for c in batch.logs
            ]
            lost |= set(coord.append_log(wid, uploads))
        if batch.heartbeats:
            lost |= set(coord.heartbeat(wid, batch.heartbeats))
        if batch.finished:
            reports = [
                Report(
                    o.attempt_id,
                    o.token,
                    o.outcome,
                    o.exit_code,
                    o.reason,
                    o.started_at,
                    o.resources,
                )
                for o in batch.finished
            ]
            for o, result in zip(batch.finished, coord.finish(wid, reports), strict=True):
                if isinstance(result, LeaseLost):
                    lost.add(o.attempt_id)
        if batch.released:
            coord.release(wid, batch.released, reason or "released by the worker")
        return Answer(sorted(lost), False)

    def drain(self) -> None:
        self.coord.drain(None, self.worker_id, True)

    def close(self) -> None:
        pass
