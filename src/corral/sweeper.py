"""The sweeper: ends leases past their expiry, whether or not any worker is asking for work."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from corral.coordinator import Coordinator

log = logging.getLogger("corral.sweeper")


async def sweep_forever(coordinator: Coordinator, interval: float) -> None:
    while True:
        try:
            ended = await run_in_threadpool(coordinator.sweep)
            for e in ended:
                log.info(
                    "lease of attempt %s expired: job %s is %s", e.attempt_id, e.job_id, e.state
                )
        except asyncio.CancelledError:
            raise
        except Exception:  # a store hiccup must not stop sweeping for good
            log.exception("sweep failed")
        await asyncio.sleep(interval)
