"""`corral serve` with the local worker's log cap raised (W7): corral has no setting for it.

    python -m bench.corral_serve serve --home DIR --port PORT ...   (as `corral serve`)

The cap is ``BENCH_CORRAL_LOG_LIMIT`` bytes. The local worker's options are built in
``corral.server`` from ``AgentOptions``; this swaps in the same class with another default
``log_limit``, and changes nothing else.
"""

from __future__ import annotations

import functools
import os
import sys

import corral.server
from corral.cli.main import cli
from corral.worker.agent import AgentOptions


def main() -> None:
    limit = int(os.environ["BENCH_CORRAL_LOG_LIMIT"])
    corral.server.AgentOptions = functools.partial(AgentOptions, log_limit=limit)  # type: ignore[misc]
    cli(sys.argv[1:], prog_name="corral")


if __name__ == "__main__":
    main()
