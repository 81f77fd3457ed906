"""`corral exec`'s status line on a terminal: where the hosts stand at a glance."""

from __future__ import annotations

from corral.cli.exec import status_line


def jobs(*states: str) -> list[dict[str, str]]:
    return [{"state": s} for s in states]


def test_the_status_line_counts_hosts_done_failed_running_and_waiting() -> None:
    line = status_line(jobs("passed", "failed", "lost", "running", "leased", "queued"), 3.25)
    assert line == "3/6 hosts done (2 failed), 2 running, 1 waiting, 3.2s"
    assert status_line(jobs("passed", "passed"), 0.5) == "2/2 hosts done, 0.5s"
    assert status_line(jobs("queued"), 0.0) == "0/1 hosts done, 1 waiting, 0.0s"
