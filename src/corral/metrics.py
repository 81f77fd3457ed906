"""Prometheus metrics: counters fed by hub notifications and gauges read from the store on scrape."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

if TYPE_CHECKING:
    from corral.coordinator import Coordinator


def render(coordinator: Coordinator) -> tuple[bytes, str]:
    """A fresh registry per scrape: values come from the store, so every coordinator agrees."""
    registry = CollectorRegistry()
    workers = Gauge("corral_workers", "Workers by state", ["state"], registry=registry)
    slots = Gauge("corral_worker_slots", "Worker slots", ["use"], registry=registry)
    now = time.time()
    found = coordinator.store.workers.list()
    for state in ("online", "draining", "offline"):
        workers.labels(state).set(
            sum(1 for w in found if w.state(now, coordinator.offline_after) == state)
        )
    slots.labels("total").set(sum(w.slots for w in found))
    slots.labels("busy").set(sum(w.busy for w in found))
    return generate_latest(registry), CONTENT_TYPE_LATEST
