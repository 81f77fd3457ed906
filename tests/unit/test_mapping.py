"""The run spec of Client.map: one task job per item, in order, items bound as arguments."""

from __future__ import annotations

import pytest

from corral.domain.runspec import parse
from corral.errors import MapFailed
from corral.mapping import map_spec


def test_one_job_per_item_in_order_with_the_options() -> None:
    spec, items = map_spec(
        "square", range(12), arg="x", on={"pool": "gpu"}, timeout="1m", retries=2, name="sq"
    )
    assert items == list(range(12))
    assert list(spec["jobs"]) == [f"item-{i:02d}" for i in range(12)]
    assert spec["name"] == "sq"
    assert spec["jobs"]["item-03"] == {
        "task": "square",
        "args": {"x": 3},
        "on": {"pool": "gpu"},
        "timeout": "1m",
        "retries": 2,
    }
    parsed = parse(spec)
    assert [j.name for j in parsed.jobs] == list(spec["jobs"])


def test_mapping_items_are_keyword_arguments() -> None:
    spec, _ = map_spec("divide", [{"a": 1, "b": 2}])
    assert spec == {
        "name": "map-divide",
        "jobs": {"item-0": {"task": "divide", "args": {"a": 1, "b": 2}}},
    }


def test_an_item_that_is_not_a_mapping_needs_arg() -> None:
    with pytest.raises(TypeError, match=r"item 1 is a int, not a mapping .* pass arg='NAME'"):
        map_spec("square", [{"x": 1}, 2])


def test_map_failed_lists_every_failure_and_keeps_the_results() -> None:
    exc = MapFailed(9, [(1, "b", "failed: boom"), (2, "c", "timed_out: 1s")], ["A", None, None])
    assert str(exc) == (
        "run 9: 2 of 3 items failed: item 1 ('b'): failed: boom; item 2 ('c'): timed_out: 1s"
    )
    assert exc.results == ["A", None, None] and len(exc.failures) == 2
