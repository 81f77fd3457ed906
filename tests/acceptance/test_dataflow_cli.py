"""Dataflow through real processes: a chain of jobs through stdout and files, and Client.map."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from acceptance_helpers import Cluster, Procs

import corral

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TASKS = """
import corral

@corral.task
def square(x):
    return x * x

@corral.task
def divide(a, b):
    return a / b
"""

PLACEHOLDER = "sha256:" + "0" * 64

CHAIN = f"""
name = "chain"

[jobs.count]
command = "wc -l < inputs/data.csv"
inputs = {{ "data.csv" = "{PLACEHOLDER}" }}
stdout = "object"

[jobs.double]
command = "mkdir -p out && echo $(( $(cat inputs/n) * 2 )) > out/double.txt && echo doubled"
inputs = {{ n = "count:stdout" }}
outputs = ["out/*.txt"]

[jobs.report]
command = "echo total=$(cat inputs/d.txt)"
inputs = {{ "d.txt" = "double:out/double.txt" }}
stdout = "object"
"""


@pytest.fixture(scope="module")
def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tasks = tmp_path_factory.mktemp("tasks")
    (tasks / "maths.py").write_text(TASKS)
    keeper = Procs()
    try:
        cluster = Cluster(keeper, tmp_path_factory.mktemp("dataflow"), "dataflow").start(
            local_slots=0, lease_ttl="10s", extra=("--tasks", str(tasks))
        )
        cluster.worker("df-worker", slots=4, extra=("--allow", "task,command"))
        yield cluster
    finally:
        keeper.close()


@pytest.fixture
def server(_server: Cluster, procs: Procs, tmp_path: Path) -> Cluster:
    return _server.borrow(procs, tmp_path)


def test_a_chain_of_three_jobs_through_stdout_and_files(server: Cluster, tmp_path: Path) -> None:
    spec = tmp_path / "chain.toml"
    spec.write_text(CHAIN)
    data = tmp_path / "data.csv"
    data.write_text("a,1\nb,2\nc,3\n")

    wrong = server.cli("submit", str(spec), "--input", "nope.csv=" + str(data))
    assert wrong.code != 0 and "--input nope.csv: no job of" in wrong.err, wrong

    done = server.cli("submit", str(spec), "--input", f"data.csv={data}", "--json")
    assert done.code == 0, done
    run = json.loads(done.out)
    assert {j["name"]: j["state"] for j in run["jobs"]} == {
        "count": "passed",
        "double": "passed",
        "report": "passed",
    }
    with corral.Client(server.url, server.token) as c:
        handle = corral.RunHandle(c, run)
        assert handle.output("report", "stdout") == b"total=6\n"
        assert handle.output("count", "stdout") == b"3\n"
        assert handle.output("double", "out/double.txt") == b"6\n"
        names = [o["name"] for o in handle.outputs("double")]
        assert names == ["out/double.txt"]  # its stdout stays a log
        assert "doubled" in handle.log("double")
        job = handle.job("report")
        assert job["outputs"][0]["name"] == "stdout" and job["outputs"][0]["size"] == 8


def test_bad_output_names_are_refused_at_submit(server: Cluster, tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('[jobs.a]\ncommand = "true"\noutputs = ["../../etc/passwd"]\n')
    done = server.cli("submit", str(spec))
    assert done.code != 0
    assert "jobs.a.outputs[0]" in done.err and "'..'" in done.err, done
    assert server.cli("runs").out.count("bad") == 0


def test_map_over_200_items_returns_results_in_order(server: Cluster) -> None:
    with corral.Client(server.url, server.token) as c:
        assert c.map("square", range(200), arg="x", progress=False) == [i * i for i in range(200)]
        with pytest.raises(TypeError, match="pass arg="):
            c.map("square", [1, 2])
        items = [{"a": 6, "b": 3}, {"a": 1, "b": 0}, {"a": 5, "b": 2}, {"a": 2, "b": 0}]
        with pytest.raises(corral.MapFailed) as info:
            c.map("divide", items, progress=False)
        failed = info.value
        assert [(i, item) for i, item, _ in failed.failures] == [(1, items[1]), (3, items[3])]
        assert all("ZeroDivisionError" in why for _, _, why in failed.failures)
        assert failed.results == [2.0, None, 2.5, None]
        assert "2 of 4 items failed" in str(failed)
