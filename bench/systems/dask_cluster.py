"""Run ``LocalCluster(n_workers=2, threads_per_worker=1)`` in its own process.

``python -m bench.systems.dask_cluster --port P`` — the harness connects a
Client to tcp://127.0.0.1:P and stops this process with SIGTERM; the cluster
then closes its workers. Running the cluster apart from the client lets the
harness measure the scheduler and workers as "the system".
"""

import argparse
import logging
import signal
import threading

from distributed import LocalCluster


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=args.port,
        dashboard_address=None,
        silence_logs=logging.WARNING,
    )
    print(f"READY {cluster.scheduler_address}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        cluster.close(timeout=10)


if __name__ == "__main__":
    main()
