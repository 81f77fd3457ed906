"""corral runs jobs on a fleet of machines and keeps track of every one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.errors import (
    Conflict,
    CorralError,
    Forbidden,
    InvalidInput,
    InvalidRunSpec,
    LeaseLost,
    MapFailed,
    NotFound,
    Unauthorized,
)
from corral.handles import RunHandle  # light: the client loads only when it is used
from corral.task_mark import task

if TYPE_CHECKING:
    from corral.client import Client

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Conflict",
    "CorralError",
    "Forbidden",
    "InvalidInput",
    "InvalidRunSpec",
    "LeaseLost",
    "MapFailed",
    "NotFound",
    "RunHandle",
    "Unauthorized",
    "__version__",
    "task",
]


def __getattr__(name: str) -> Any:
    # the client (and httpx under it) loads on first use: task files `import corral` in every
    # task process of a worker, and need only the decorator
    if name == "Client":
        from corral.client import Client

        return Client
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
