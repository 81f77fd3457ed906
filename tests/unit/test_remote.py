"""What runs on a fleet host, run here in-process: shipping modules, shared values, a job."""

from __future__ import annotations

import inspect
import os
import sys
import threading
from typing import Any

from corral.fleet import remote
from corral.worker import executor


def test_shared_values_are_key_value_lines() -> None:
    text = (
        "VERSION=1.2.3\n# a comment\n\nURL=http://x/?a=b\nnot a pair\n9BAD=x\nspaced key=x\n_OK=\n"
    )
    assert remote.parse_shared(text) == {"VERSION": "1.2.3", "URL": "http://x/?a=b", "_OK": ""}


def test_install_makes_shipped_source_importable_under_its_name() -> None:
    name = "corral_shipped_test.worker.executor"
    try:
        remote.install({name: inspect.getsource(executor)})
        module = sys.modules[name]
        assert module.ExecSpec(command="true").command == "true"
        assert sys.modules["corral_shipped_test.worker"].__path__ == []
    finally:
        for key in [k for k in sys.modules if k.startswith("corral_shipped_test")]:
            del sys.modules[key]


class Channel:
    """The two ends execnet would give: what the job sends, and what it is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.inbox: list[Any] = []
        self.cond = threading.Condition()
        self.closed = False

    def send(self, message: tuple[Any, ...]) -> None:
        self.sent.append(message)

    def receive(self) -> Any:
        with self.cond:
            while not self.inbox and not self.closed:
                self.cond.wait()
            if self.inbox:
                return self.inbox.pop(0)
            raise EOFError("channel closed")

    def put(self, message: Any) -> None:
        with self.cond:
            self.inbox.append(message)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def test_a_job_streams_output_and_publishes_shared_values() -> None:
    channel = Channel()
    remote.run_job(
        channel,
        {"command": 'echo out; echo "A=1" >> "$CORRAL_OUTPUT"; echo B=two >> "$CORRAL_OUTPUT"'},
    )
    outs = "".join(m[3] for m in channel.sent if m[0] == "out")
    assert outs == "out\n"
    end = channel.sent[-1]
    assert end[0] == "end" and end[1]["outcome"] == "passed" and end[1]["exit_code"] == 0
    assert end[2] == {"A": "1", "B": "two"}


def test_a_closed_channel_kills_the_job() -> None:
    channel = Channel()
    threading.Timer(0.3, channel.close).start()
    remote.run_job(channel, {"command": "sleep 30", "grace": 0.1})
    end = channel.sent[-1]
    assert end[1]["outcome"] == "canceled"
    assert "the connection to the coordinator dropped" in end[1]["reason"]
    assert end[1]["finished_at"] - end[1]["started_at"] < 10


def test_a_kill_message_names_its_reason() -> None:
    channel = Channel()
    threading.Timer(0.3, channel.put, args=(("kill", "canceled by admin"),)).start()
    remote.run_job(channel, {"command": "sleep 30", "grace": 0.1})
    assert "canceled by admin" in channel.sent[-1][1]["reason"]


def test_jobs_on_a_host_reuse_working_directories_until_the_connection_closes(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(remote, "_kept", [])
    homes = []
    for _ in range(2):
        channel = Channel()
        remote.run_job(channel, {"command": 'echo "$HOME"'})
        homes.append("".join(m[3] for m in channel.sent if m[0] == "out").strip())
    assert homes[0] == homes[1]  # left as made: handed to the next job
    assert os.path.isdir(homes[0])
    closing = Channel()
    closing.put(("close",))
    remote.serve(closing)
    assert not os.path.exists(homes[0])


def test_a_job_channel_finds_the_remote_module_among_the_shipped_ones() -> None:
    from corral.fleet import transport

    shipped = transport._shipped()
    assert list(shipped)[-1] == remote.__name__  # after the executor it imports
    assert transport.JOB_CHANNEL.startswith(f"from {remote.__name__} import serve")
