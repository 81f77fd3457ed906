"""Job logs: time-stamped chunks per attempt, stdout and stderr kept apart, fenced by lease."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import bindparam, select, update

from corral.domain.models import LogChunk, Upload
from corral.store.engine import Database, insert_ignoring_duplicates
from corral.store.leases import ACTIVE
from corral.store.tables import attempts, log_chunks

STREAMS = ("stdout", "stderr", "corral")


class Logs:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, chunks: Sequence[Upload]) -> list[int]:
        """Store chunks of attempts still held; returns attempt ids whose lease is not held."""
        if not chunks:
            return []
        ids = sorted({c.attempt_id for c in chunks})
        with self.db.write(durable=False) as conn:
            held = {
                r.id: r.lease_token
                for r in conn.execute(
                    select(attempts.c.id, attempts.c.lease_token).where(
                        attempts.c.id.in_(ids), attempts.c.state.in_(ACTIVE)
                    )
                ).all()
            }
            good = [c for c in chunks if held.get(c.attempt_id) == c.token]
            lost = sorted({c.attempt_id for c in chunks if held.get(c.attempt_id) != c.token})
            if good:
                # a retried upload repeats chunks: store (and count the bytes of) each seq once
                stored = {
                    (r.attempt_id, r.seq)
                    for r in conn.execute(
                        select(log_chunks.c.attempt_id, log_chunks.c.seq).where(
                            log_chunks.c.attempt_id.in_({c.attempt_id for c in good}),
                            log_chunks.c.seq.in_({c.seq for c in good}),
                        )
                    )
                }
                fresh: dict[tuple[int, int], Upload] = {}
                for c in good:
                    if (c.attempt_id, c.seq) not in stored:
                        fresh.setdefault((c.attempt_id, c.seq), c)
                good = list(fresh.values())
            if good:
                conn.execute(
                    insert_ignoring_duplicates(self.db, log_chunks),
                    [
                        {
                            "attempt_id": c.attempt_id,
                            "seq": c.seq,
                            "stream": c.stream,
                            "ts": c.ts,
                            "data": c.data,
                        }
                        for c in good
                    ],
                )
                sizes: dict[int, int] = defaultdict(int)
                for c in good:
                    sizes[c.attempt_id] += len(c.data)
                conn.execute(
                    update(attempts)
                    .where(attempts.c.id == bindparam("aid"))
                    .values(log_bytes=attempts.c.log_bytes + bindparam("n")),
                    [{"aid": a, "n": n} for a, n in sizes.items()],
                )
            return lost

    def read(self, attempt_id: int, after: int = -1, limit: int = 1000) -> list[LogChunk]:
        with self.db.read() as conn:
            found = conn.execute(
                select(log_chunks.c.seq, log_chunks.c.stream, log_chunks.c.ts, log_chunks.c.data)
                .where(log_chunks.c.attempt_id == attempt_id, log_chunks.c.seq > after)
                .order_by(log_chunks.c.seq)
                .limit(limit)
            ).all()
        return [LogChunk(r.seq, r.stream, r.ts, r.data) for r in found]
