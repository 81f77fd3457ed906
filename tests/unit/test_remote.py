"""What runs on a fleet host, run here in-process: shipping modules, shared values, a job."""

from __future__ import annotations

import inspect
import json
import os
import sys
import threading
import time
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

    def setcallback(self, callback: Any, endmarker: Any) -> None:
        """As execnet's: every item, then the end marker, given to `callback` on a thread of
        the channel's own (execnet's receiving thread)."""

        def deliver() -> None:
            while True:
                try:
                    item = self.receive()
                except EOFError:
                    callback(endmarker)
                    return
                callback(item)

        threading.Thread(target=deliver, daemon=True).start()


def _unwatched(_execution: Any) -> None:
    """A job no one may kill (its channel is read by no one)."""


def test_a_job_streams_output_and_publishes_shared_values() -> None:
    channel = Channel()
    remote.run_job(
        channel,
        {"command": 'echo out; echo "A=1" >> "$CORRAL_OUTPUT"; echo B=two >> "$CORRAL_OUTPUT"'},
        _unwatched,
    )
    outs = "".join(m[3] for m in channel.sent if m[0] == "out")
    assert outs == "out\n"
    assert channel.sent[-1][0] == "end"
    end = _decoded(channel.sent[-1])
    assert end["result"]["outcome"] == "passed" and end["result"]["exit_code"] == 0
    assert end["shared"] == {"A": "1", "B": "two"}


def test_the_shared_values_file_goes_with_its_job() -> None:
    channel = Channel()
    remote.run_job(
        channel,
        {"command": 'echo A=1 >> "$CORRAL_OUTPUT"; echo "$CORRAL_OUTPUT"'},
        _unwatched,
    )
    path = "".join(m[3] for m in channel.sent if m[0] == "out").strip()
    assert _decoded(channel.sent[-1])["shared"] == {"A": "1"}
    assert path and not os.path.exists(path)


def test_jobs_on_a_host_reuse_working_directories_until_the_connection_closes(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(remote, "_kept", [])
    homes = []
    for _ in range(2):
        channel = Channel()
        remote.run_job(channel, {"command": 'echo "$HOME"'}, _unwatched)
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


def _decoded(end: tuple[Any, ...]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(end[1])
    return decoded


def _ends(channel: Channel) -> list[dict[str, Any]]:
    return [_decoded(m) for m in channel.sent if m[0] == "end"]


def _serve_jobs(channel: Channel) -> threading.Thread:
    thread = threading.Thread(target=remote.serve_jobs, args=(channel,), daemon=True)
    thread.start()
    return thread


def _wait_for_ends(channel: Channel, n: int) -> None:
    deadline = time.monotonic() + 20
    while len(_ends(channel)) < n:
        assert time.monotonic() < deadline, channel.sent
        time.sleep(0.01)


def test_a_kept_channel_runs_jobs_one_after_another() -> None:
    channel = Channel()
    thread = _serve_jobs(channel)
    channel.put(("run", 1, json.dumps({"command": "echo one"})))
    channel.put(("run", 2, json.dumps({"command": 'echo two; echo K=2 >> "$CORRAL_OUTPUT"'})))
    _wait_for_ends(channel, 2)
    outs = [m[3] for m in channel.sent if m[0] == "out"]
    assert outs == ["one\n", "two\n"]
    first, second = _ends(channel)
    assert first["result"]["outcome"] == second["result"]["outcome"] == "passed"
    assert first["shared"] == {} and second["shared"] == {"K": "2"}
    channel.close()
    thread.join(5)
    assert not thread.is_alive()


def test_a_kill_stops_only_the_job_it_names() -> None:
    channel = Channel()
    _serve_jobs(channel)
    channel.put(("run", 1, json.dumps({"command": "true"})))
    _wait_for_ends(channel, 1)
    # a kill for job 1 that crossed its end: job 2 runs on regardless
    channel.put(("kill", 1, "too late"))
    channel.put(("run", 2, json.dumps({"command": "echo fine"})))
    _wait_for_ends(channel, 2)
    assert _ends(channel)[1]["result"]["outcome"] == "passed"
    # a kill sent right behind its job, before the job is under way, still stops it
    channel.put(("run", 3, json.dumps({"command": "sleep 30", "grace": 0.1})))
    channel.put(("kill", 3, "canceled by admin"))
    _wait_for_ends(channel, 3)
    third = _ends(channel)[2]["result"]
    assert third["outcome"] == "canceled" and "canceled by admin" in third["reason"]
    assert third["finished_at"] - third["started_at"] < 10
    channel.close()


def test_closing_a_kept_channel_kills_its_job() -> None:
    channel = Channel()
    thread = _serve_jobs(channel)
    channel.put(("run", 1, json.dumps({"command": "sleep 30", "grace": 0.1})))
    time.sleep(0.3)
    channel.close()
    _wait_for_ends(channel, 1)
    end = _ends(channel)[0]["result"]
    assert end["outcome"] == "canceled"
    assert "the connection to the coordinator dropped" in end["reason"]
    thread.join(5)
    assert not thread.is_alive()


def test_output_files_are_made_only_by_jobs_and_go_with_the_connection(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(remote, "_outputs", [])
    channel = Channel()
    remote.run_job(
        channel, {"command": 'echo "$CORRAL_OUTPUT"; test ! -e "$CORRAL_OUTPUT"'}, _unwatched
    )
    path = "".join(m[3] for m in channel.sent if m[0] == "out").strip()
    # not there until the job writes it
    assert _decoded(channel.sent[-1])["result"]["outcome"] == "passed"
    directory = os.path.dirname(path)
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.listdir(directory) == []  # read and removed after the job
    closing = Channel()
    closing.put(("close",))
    remote.serve(closing)
    assert not os.path.exists(directory)
