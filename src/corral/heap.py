"""The garbage collector of a long-lived corral process (the server, a worker), set once started.

A server holds about 130,000 objects the collector tracks once its modules, app and store are
loaded, and keeps nearly all of them for its life. With the interpreter's defaults each full
collection walks them all: about 100 ms here, once or twice in a run of 5,000 task jobs, with
every thread stopped. Frozen after start-up (`gc.freeze`) they are left out of every
collection: a full one then takes 3-5 ms. The youngest generation is collected every 5,000
allocations instead of 700: most of a request's or a job's objects are freed by reference
counting before a collection looks at them, so fewer are promoted to the older generations,
which are collected less often in turn. Cycles still go: the collector runs, only less often,
and never over the frozen start-up heap.
"""

from __future__ import annotations

import gc

THRESHOLDS = (5000, 20, 100)  # youngest generation, then how often each older one is collected


def settle() -> None:
    """Call once the process has started (modules, app, store, threads): collect what start-up
    left, freeze the rest out of later collections, and collect less often from then on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
