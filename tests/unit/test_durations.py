"""Durations as people write them: "90s", "20m", "1h30m" or plain seconds."""

from __future__ import annotations

import math

import pytest

from corral.domain.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("20m", 1200.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        (" 2h ", 7200.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("1m30s250ms", 90.25),
        ("2d", 172800.0),
        ("10", 10.0),
        ("0.25", 0.25),
        (5, 5.0),
        (0.1, 0.1),
        ("366d", 366 * 86400.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", " ", "soon", "1x", "m", "1h30", "h1", "-5", "-5s", "1e3", "1,5s", "20 minutes", "1h-30m"],
)
def test_malformed_durations(value: str) -> None:
    with pytest.raises(ValueError, match='expected a duration like "20m"'):
        parse_duration(value)


@pytest.mark.parametrize("value", [0, -1, -0.5, "0", "0s", "0ms", "367d", math.inf, math.nan])
def test_durations_out_of_range(value: object) -> None:
    with pytest.raises(ValueError, match="positive duration of at most a year"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False, None, [1], {"s": 1}])
def test_durations_of_the_wrong_type(value: object) -> None:
    with pytest.raises(ValueError, match='expected a duration like "20m"'):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0, "0ms"),
        (0.25, "250ms"),
        (5, "5.0s"),
        (59.4, "59.4s"),
        (90, "1m30s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (5400, "1h30m"),
        (90000, "25h00m"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
