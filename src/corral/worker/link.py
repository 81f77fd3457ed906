"""How a worker agent talks to its coordinator: over HTTP, or by direct calls inside `corral serve`."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from corral.domain.models import Lease, Report, Upload


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


@dataclass
class Batch:
    """What the agent has to say since its last report."""

    started: list[tuple[int, str, float]] = field(default_factory=list)
    heartbeats: list[tuple[int, str]] = field(default_factory=list)
    logs: list[Upload] = field(default_factory=list)
    finished: list[Report] = field(default_factory=list)
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

    def may_hold_end(self, run_id: int) -> bool:
        """Whether the end of this run's job may wait a few milliseconds to be reported with
        others (only the coordinator can tell: a run of one job that nobody waits for)."""
        ...

    def interrupt(self) -> None:
        """End a lease wait in progress (the agent is leaving)."""
        ...

    def close(self) -> None: ...

    def task_source(self, sha256: str) -> bytes:
        """A task file's source by its content hash (NotFound when the server holds none)."""
        ...

    def fetch_object(self, sha256: str, sink: Sink) -> None:
        """Write an input's bytes into `sink` chunk by chunk (the caller checks the hash)."""
        ...

    def put_object(self, attempt_id: int, sha256: str, size: int, f: BinaryIO) -> None:
        """Store an output of an attempt this worker holds, granted to its run's project."""
        ...


def new_incarnation() -> str:
    """A name for this worker's process (a link is made once per process): the coordinator
    tells a restart of the worker from the same process joining again by it."""
    return secrets.token_hex(8)


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
        worker, _secret = coordinator.join(
            system, name, labels, slots, list(allow), local=True, incarnation=new_incarnation()
        )
        self.worker_id = worker.id
        self.worker_name = worker.name
        self.lease_ttl = coordinator.lease_ttl
        self._interrupted = threading.Event()  # a lease wait in progress returns at once

    def lease(self, max_jobs: int, wait: float) -> list[Lease]:
        return self.coord.lease_wait(self.worker_id, max_jobs, wait, self._interrupted)

    def may_hold_end(self, run_id: int) -> bool:
        """Whether the end of this run's job may wait a few milliseconds to be reported with
        others (the coordinator says: a run of one job that nobody waits for)."""
        return self.coord.may_hold_end(run_id)

    def interrupt(self) -> None:
        from corral import events

        self._interrupted.set()
        self.coord.hub.notify(events.QUEUE, forward=False)  # wakes the waiting lease

    def report(self, batch: Batch, reason: str = "") -> Answer:
        lost, _ = self.coord.report(
            self.worker_id,
            started=batch.started,
            logs=batch.logs,
            heartbeats=batch.heartbeats,
            finished=batch.finished,
            released=batch.released,
            reason=reason or "released by the worker",
        )
        return Answer(lost, False)

    def drain(self) -> None:
        self.coord.drain(None, self.worker_id, True)

    def task_source(self, sha256: str) -> bytes:
        from corral.auth import Principal

        me = Principal(0, "worker", self.worker_name, worker_id=self.worker_id)
        return self.coord.task_source(me, sha256)

    def fetch_object(self, sha256: str, sink: Sink) -> None:
        row = self.coord.find_object(self._me(), sha256)
        for chunk in self.coord.object_bytes(row):
            sink.write(chunk)

    def put_object(self, attempt_id: int, sha256: str, size: int, f: BinaryIO) -> None:
        proj, upload = self.coord.begin_upload(self._me(), sha256, None, size, attempt_id)
        try:
            while chunk := f.read(1024 * 1024):
                upload.feed(chunk)
            self.coord.finish_upload(proj, upload)
        except BaseException:
            upload.abort()
            raise

    def _me(self) -> Any:
        from corral.auth import Principal

        return Principal(0, "worker", self.worker_name, worker_id=self.worker_id)

    def close(self) -> None:
        pass
