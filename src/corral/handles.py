"""A submitted run as a script holds it: its JSON as last read, and what to do with it next."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.client import Client

ENDED = ("passed", "failed", "canceled")
JOB_ENDED = ("passed", "failed", "timed_out", "canceled", "lost", "skipped")


class RunHandle(Mapping[str, Any]):
    """The run's JSON (read it like a dict: `run["state"]`), plus `wait`, `log`, `jobs`...

    The data is what the server answered last; `refresh()` and `wait()` read it again.
    """

    def __init__(self, client: Client, data: Mapping[str, Any]) -> None:
        self.client = client
        self.data: dict[str, Any] = dict(data)

    # -- the run's fields, as a mapping and as attributes ----------------------------------

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<run {self.id} {self.name!r} {self.state}>"

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def state(self) -> str:
        return str(self.data["state"])

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    # -- reading and waiting ----------------------------------------------------------------

    def refresh(self) -> RunHandle:
        self.data = dict(self.client.run(self.id))
        return self

    def wait(self, timeout: float | None = None, *, progress: bool = False) -> RunHandle:
        """Block until the run ends or `timeout` seconds pass; `progress` draws a bar of jobs
        done (on a terminal; elsewhere it waits quietly)."""
        if not progress:
            self.data = dict(self.client.wait(self.id, timeout))
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        console = Console(stderr=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        columns = (
            "[bold]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            "{task.fields[failed]}",
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
            task = bar.add_task(f"run {self.id}", total=None, failed="")
            while True:
                counts: Mapping[str, int] = self.data.get("counts", {})
                done = sum(n for s, n in counts.items() if s in JOB_ENDED)
                bad = sum(n for s, n in counts.items() if s in ("failed", "timed_out", "lost"))
                bar.update(
                    task,
                    total=sum(counts.values()) or None,
                    completed=done,
                    failed=f"[red]{bad} failed" if bad else "",
                )
                left = None if deadline is None else deadline - time.monotonic()
                if self.ended or (left is not None and left <= 0):
                    return self
                slice_ = 0.5 if left is None else max(0.0, min(0.5, left))
                self.data = dict(self.client.wait(self.id, slice_))

    def jobs(self) -> list[dict[str, Any]]:
        """Every job of the run with its state, worker, and why it waits."""
        return list(self.client.run(self.id)["jobs"])

    def job(self, label: str) -> dict[str, Any]:
        """One job with its attempts."""
        return self.client.job(self.id, label)

    def result(self, label: str) -> Any:
        """A task job's return value (its latest attempt's); None until it has one."""
        # an ended run's answer to `submit(wait=...)` holds them already
        for item in self.data.get("results", ()) if self.ended else ():
            if item["label"] == label:
                return item["result"]
        return self.client.result(self.id, label)

    def outputs(self, label: str) -> list[dict[str, Any]]:
        """What a job's latest attempt kept: name, sha256 and size of each output."""
        return self.client.outputs(self.id, label)

    def output(self, label: str, name: str) -> bytes:
        """The bytes of one output of a job ("stdout", or a path among its outputs)."""
        return self.client.output(self.id, label, name)

    def log(self, label: str, *, attempt: int | None = None) -> str:
        """A job's whole log (stdout and stderr in the order they were written)."""
        parts: list[str] = []
        after = -1
        while True:
            page = self.client.log(self.id, label, attempt=attempt, after=after)
            chunks = page.get("chunks", [])
            parts.extend(c["data"] for c in chunks)
            if not chunks:
                return "".join(parts)
            after = int(page["next"])

    # -- changing it --------------------------------------------------------------------------

    def cancel(self, label: str | None = None) -> RunHandle:
        self.data = dict(self.client.cancel(self.id, label))
        return self

    def rerun(self, *, failed: bool = False) -> RunHandle:
        self.data = dict(self.client.rerun(self.id, failed))
        return self
