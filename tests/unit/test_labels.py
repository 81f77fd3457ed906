"""Labels and selectors: parsing `key=value`, checking tables, and plain-equality matching."""

from __future__ import annotations

import pytest

from corral.domain.labels import (
    LabelError,
    check_labels,
    check_pair,
    matches,
    pairs,
    parse_labels,
    render,
)


def test_parse_labels_from_flags() -> None:
    assert parse_labels(["platform=linux", "arch=x86_64"]) == {
        "platform": "linux",
        "arch": "x86_64",
    }
    assert parse_labels(["platform=linux,arch=x86_64", " role = app "]) == {
        "platform": "linux",
        "arch": "x86_64",
        "role": "app",
    }
    assert parse_labels([]) == {}
    assert parse_labels(["", ",,"]) == {}


def test_parse_labels_later_wins() -> None:
    assert parse_labels(["os=linux", "os=macos"]) == {"os": "macos"}


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("platform", "expected key=value"),
        ("1os=linux", "must start with a letter"),
        ("=linux", "must start with a letter"),
        ("os=", "may hold only"),
        ("os=li nux", "may hold only"),
        ("os=a,b", "expected key=value"),  # `b` alone is not a pair
        ("o s=linux", "must start with a letter"),
        ("os=" + "x" * 129, "may hold only"),
        ("k" * 64 + "=v", "must start with a letter"),
    ],
)
def test_parse_labels_errors(item: str, words: str) -> None:
    with pytest.raises(LabelError, match=words):
        parse_labels([item])


def test_label_error_is_a_value_error() -> None:
    assert issubclass(LabelError, ValueError)


def test_check_pair_accepts_the_allowed_characters() -> None:
    assert check_pair("site.eu-1_a", "a:b/c+d@e-f_g.h") == ("site.eu-1_a", "a:b/c+d@e-f_g.h")
    assert check_pair("k" * 63, "v" * 128) == ("k" * 63, "v" * 128)
    assert check_pair("n", 3) == ("n", "3")  # TOML numbers become strings


@pytest.mark.parametrize("value", [True, 1.5, None, ["linux"], {"a": "b"}])
def test_check_pair_refuses_non_string_values(value: object) -> None:
    with pytest.raises(LabelError, match="string value"):
        check_pair("platform", value)


def test_check_labels() -> None:
    assert check_labels({"platform": "linux", "cores": 8}) == {"platform": "linux", "cores": "8"}
    assert check_labels({}) == {}
    with pytest.raises(LabelError, match="table"):
        check_labels("platform=linux")
    with pytest.raises(LabelError, match="table"):
        check_labels(["platform=linux"])
    with pytest.raises(LabelError, match="must start with a letter"):
        check_labels({5: "x"})


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({}, {"platform": "linux"}, True),
        ({"platform": "linux"}, {"platform": "linux", "arch": "arm64"}, True),
        ({"platform": "linux", "arch": "arm64"}, {"platform": "linux", "arch": "arm64"}, True),
        ({"platform": "linux"}, {"platform": "macos"}, False),
        ({"platform": "linux"}, {}, False),
        ({"platform": "linux", "arch": "arm64"}, {"platform": "linux"}, False),
        ({"platform": "Linux"}, {"platform": "linux"}, False),  # case matters
        ({"role": "app"}, {"Role": "app"}, False),
    ],
)
def test_matches(selector: dict[str, str], labels: dict[str, str], expected: bool) -> None:
    assert matches(selector, labels) is expected


def test_pairs_and_render() -> None:
    labels = {"platform": "linux", "arch": "x86_64"}
    assert pairs(labels) == ["arch=x86_64", "platform=linux"]
    assert render(labels) == "arch=x86_64,platform=linux"
    assert render({}) == "-"
    assert parse_labels([render(labels)]) == labels


def test_a_worker_label_may_hold_several_values_that_each_match() -> None:
    labels = check_labels({"site": "web1", "role": "app,primary"}, many=True)
    assert matches({"role": "app"}, labels) and matches({"role": "primary"}, labels)
    assert matches({"role": "app", "site": "web1"}, labels)
    assert not matches({"role": "db"}, labels) and not matches({"role": "app,primary"}, labels)
    assert pairs(labels) == ["role=app", "role=primary", "site=web1"]
    with pytest.raises(LabelError):
        check_labels({"role": "app,primary"})  # selectors and plain labels: one value
    with pytest.raises(LabelError):
        check_labels({"role": "app,"}, many=True)
