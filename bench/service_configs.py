"""The tests' way of configuring sshd and SeaweedFS (tests/service_configs.py), shared here."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.append(_TESTS)  # appended: nothing of the benchmark's own can be shadowed

from service_configs import (  # noqa: E402
    free_ports,
    sshd_config,
    weed_s3_identity,
    weed_server_argv,
)

__all__ = ["free_ports", "sshd_config", "weed_s3_identity", "weed_server_argv"]
