"""One adapter module per system; imported lazily so a missing peer fails alone."""

from __future__ import annotations

import importlib
from pathlib import Path

from bench.systems.base import System

#: name -> (module, class). "floor" is handled by bench.floors, not here.
ADAPTERS = {
    "corral": ("bench.systems.corral_sys", "CorralSystem"),
    "huey": ("bench.systems.huey_sys", "HueySystem"),
    "celery": ("bench.systems.celery_sys", "CelerySystem"),
    "rq": ("bench.systems.rq_sys", "RQSystem"),
    "procrastinate": ("bench.systems.procrastinate_sys", "ProcrastinateSystem"),
    "dask": ("bench.systems.dask_sys", "DaskSystem"),
}


def load(name: str, workdir: Path) -> System:
    module, cls = ADAPTERS[name]
    return getattr(importlib.import_module(module), cls)(workdir)
