"""corral runs jobs on a fleet of machines and keeps track of every one."""

from __future__ import annotations

from corral.client import Client
from corral.errors import (
    Conflict,
    CorralError,
    Forbidden,
    InvalidInput,
    InvalidRunSpec,
    LeaseLost,
    NotFound,
    Unauthorized,
)
from corral.handles import RunHandle

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Conflict",
    "CorralError",
    "Forbidden",
    "InvalidInput",
    "InvalidRunSpec",
    "LeaseLost",
    "NotFound",
    "RunHandle",
    "Unauthorized",
    "__version__",
]
