"""Prometheus metrics, read from the store on each scrape so every coordinator reports the same."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

if TYPE_CHECKING:
    from corral.coordinator import Coordinator

# states a job waits or works in; ended jobs only grow, and their history is in the store
LIVE_STATES = ("blocked", "queued", "leased", "running")


def render(coordinator: Coordinator) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    workers = Gauge("corral_workers", "Workers by state", ["state"], registry=registry)
    slots = Gauge(
        "corral_worker_slots", "Worker slots, in all and busy", ["use"], registry=registry
    )
    jobs = Gauge("corral_jobs", "Jobs not yet ended, by state", ["state"], registry=registry)
    now = time.time()
    found = coordinator.store.workers.list()
    for state in ("online", "draining", "offline"):
        workers.labels(state).set(
            sum(1 for w in found if w.state(now, coordinator.offline_after) == state)
        )
    slots.labels("total").set(
        sum(w.slots for w in found if w.state(now, coordinator.offline_after) != "offline")
    )
    slots.labels("busy").set(sum(w.busy for w in found))
    counts = coordinator.store.runs.live_counts()
    for state in LIVE_STATES:
        jobs.labels(state).set(counts.get(state, 0))
    return generate_latest(registry), CONTENT_TYPE_LATEST
