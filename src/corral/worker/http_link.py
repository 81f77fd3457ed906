"""The worker's link over HTTP: join with a join token, then lease and report with its own credential."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import httpx

from corral.client import OBJECT_CHUNK, Http, Unreachable, _decode
from corral.domain.models import Lease
from corral.errors import CorralError, NotFound, Unauthorized
from corral.worker.agent import CoordinatorAway
from corral.worker.link import Answer, Batch, Sink, new_incarnation


class HttpLink:
    def __init__(
        self,
        http: Http,
        name: str,
        labels: dict[str, str],
        slots: int,
        allow: Sequence[str],
        *,
        retry_for: float = 60.0,
        call_retry: float = 5.0,
    ) -> None:
        self.http = http
        self.join_token = http.token
        self.retry_for = retry_for
        # how long one call retries before the agent hears the coordinator is away (and
        # starts counting towards --max-offline)
        self.call_retry = call_retry
        self._identity = {
            "name": name,
            "labels": labels,
            "slots": slots,
            "allow": list(allow),
            "incarnation": new_incarnation(),
        }
        self.worker_name = name
        self.lease_ttl = 30.0
        self._join(again=False)

    def _join(self, again: bool = True) -> None:
        """Join with the join token; `again`: this process joined before, and its credential
        is gone (revoked, or a fresh store)."""
        if self.join_token:
            self.http.set_token(self.join_token)
        answer = self.http.request(
            "POST",
            "/api/v1/workers/join",
            json={**self._identity, "rejoin": again},
            retry_for=self.retry_for,
        )
        self.http.set_token(answer["token"])
        self.worker_id = int(answer["worker"]["id"])
        self.lease_ttl = float(answer["lease_ttl"])

    def _call(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        try:
            return self.http.request(
                "POST", path, json=body, timeout=timeout, retry_for=self.call_retry
            )
        except Unreachable as exc:
            raise CoordinatorAway(str(exc)) from exc
        except Unauthorized:
            # our credential is gone (revoked, or a fresh store): join again with the join token
            self._join()
            return self.http.request(
                "POST", path, json=body, timeout=timeout, retry_for=self.call_retry
            )

    def lease(self, max_jobs: int, wait: float) -> list[Lease]:
        answer = self._call(
            "/api/v1/workers/lease", {"max": max_jobs, "wait": wait}, timeout=wait + 15.0
        )
        return [
            Lease(
                attempt_id=x["attempt"],
                token=x["token"],
                job_id=x["job_id"],
                run_id=x["run_id"],
                run_name=x["run_name"],
                job_name=x["job"],
                instance=x["instance"],
                number=x["number"],
                payload=x["spec"],
                timeout=x["timeout"],
                ttl=x["ttl"],
            )
            for x in answer["leases"]
        ]

    def report(self, batch: Batch, reason: str = "") -> Answer:
        body: dict[str, Any] = {
            "started": [{"attempt": a, "token": t, "at": at} for a, t, at in batch.started],
            "heartbeats": [{"attempt": a, "token": t} for a, t in batch.heartbeats],
            "logs": [
                {
                    "attempt": c.attempt_id,
                    "token": c.token,
                    "seq": c.seq,
                    "stream": c.stream,
                    "ts": c.ts,
                    "data": c.data,
                }
                for c in batch.logs
            ],
            "finished": [
                {
                    "attempt": o.attempt_id,
                    "token": o.token,
                    "outcome": o.outcome,
                    "exit_code": o.exit_code,
                    "reason": o.reason[:4096],
                    "started_at": o.started_at,
                    "resources": o.resources,
                    "result": o.result,
                    "outputs": [{"name": n, "sha256": h, "size": z} for n, h, z in o.outputs],
                }
                for o in batch.finished
            ],
            "released": [{"attempt": a, "token": t} for a, t in batch.released],
        }
        if reason:
            body["reason"] = reason[:1024]
        answer = self._call("/api/v1/workers/report", body)
        return Answer(answer["lost"], bool(answer["draining"]))

    def drain(self) -> None:
        self._call("/api/v1/workers/drain", {"draining": True})

    def task_source(self, sha256: str) -> bytes:
        path = f"/api/v1/tasks/sources/{sha256}"
        for again in (True, False):
            try:
                response = self.http.http.get(path, timeout=60.0)
            except httpx.TransportError as exc:
                raise CoordinatorAway(f"cannot reach {self.http.url}: {exc}") from exc
            if response.status_code == 401 and again:
                self._join()  # our credential is gone: join again, as _call does
                continue
            if response.status_code >= 400:
                try:
                    message = str(response.json()["error"]["message"])
                except Exception:
                    message = response.text[:200] or response.reason_phrase
                error = NotFound if response.status_code == 404 else CorralError
                raise error(f"task source {sha256[:12]}: {message}")
            break
        return response.content

    def fetch_object(self, sha256: str, sink: Sink) -> None:
        try:
            with self.http.http.stream("GET", f"/api/v1/objects/{sha256}", timeout=60.0) as r:
                if r.status_code >= 400:
                    r.read()
                    _decode(r)
                for chunk in r.iter_bytes(OBJECT_CHUNK):
                    sink.write(chunk)
        except httpx.TransportError as exc:
            raise CoordinatorAway(f"cannot reach {self.http.url}: {exc}") from exc

    def put_object(self, attempt_id: int, sha256: str, size: int, f: BinaryIO) -> None:
        def chunks() -> Iterator[bytes]:
            while chunk := f.read(OBJECT_CHUNK):
                yield chunk

        try:
            response = self.http.http.put(
                f"/api/v1/objects/{sha256}",
                params={"attempt": attempt_id},
                content=chunks(),
                headers={"content-length": str(size), "content-type": "application/octet-stream"},
                timeout=httpx.Timeout(600.0, connect=5.0),
            )
        except httpx.TransportError as exc:
            raise CoordinatorAway(f"cannot reach {self.http.url}: {exc}") from exc
        _decode(response)

    def may_hold_end(self, run_id: int) -> bool:
        """Never: over HTTP the worker cannot see who waits on the coordinator."""
        return False

    def interrupt(self) -> None:
        # the long-poll ends with its HTTP answer; a draining worker is handed nothing meanwhile,
        # and leases made for a request whose worker hung up go back at once
        pass

    def close(self) -> None:
        self.http.close()
