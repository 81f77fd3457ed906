"""Object names and hashes are strict; byte ranges follow RFC 9110."""

from __future__ import annotations

import pytest

from corral.errors import InvalidInput, RangeNotSatisfiable
from corral.objects.backend import url_problems
from corral.objects.names import MAX_NAME, check_name, parse_sha256
from corral.objects.ranges import parse_range

HEX = "ab" * 32


def test_a_sha256_is_64_lowercase_hex_digits_with_an_optional_prefix() -> None:
    assert parse_sha256(HEX) == HEX
    assert parse_sha256("sha256:" + HEX) == HEX


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ab",
        HEX[:-1],
        HEX + "a",
        HEX.upper(),
        "g" * 64,
        "sha256:",
        "md5:" + HEX,
        " " + HEX,
        HEX + "\n",
        "sha256:sha256:" + HEX,
    ],
)
def test_anything_else_is_not_a_sha256(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_sha256(bad, "sha")
    assert info.value.status == 422
    assert info.value.field == "sha"
    assert "64 lowercase hex" in info.value.message


@pytest.mark.parametrize(
    "good", ["a", "out/report.txt", "a b/c-d_e.f", "ü/日本.txt", "..a", "a..", ".hidden"]
)
def test_relative_paths_of_plain_parts_are_names(good: str) -> None:
    assert check_name(good) == good


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("/etc/passwd", "relative"),
        ("../up", "'..'"),
        ("a/../../b", "'..'"),
        ("a/..", "'..'"),
        ("./a", "'.'"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\x7fb", "control"),
        ("a\\..\\b", "backslash"),
        ("x" * (MAX_NAME + 1), "at most"),
        ("x" * 256, "each part"),
        ("é" * (MAX_NAME // 2 + 1), "at most"),
    ],
)
def test_names_that_could_escape_or_confuse_are_refused(bad: str, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_name(bad, "outputs")
    assert info.value.field == "outputs"
    assert why in info.value.message


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("", 10, None),
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=2-5", 10, (2, 5)),
        ("bytes=2-", 10, (2, 9)),
        ("bytes=2-100", 10, (2, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes = 1 - 2", 10, (1, 2)),
        # ignored, so the whole object is served: RFC 9110 lets a server do that
        ("bytes=5-2", 10, None),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=-", 10, None),
    ],
)
def test_one_byte_range_is_served(
    header: str | None, size: int, expected: tuple[int, int] | None
) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-5", 0)],
)
def test_a_range_past_the_end_cannot_be_met(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.status == 416
    assert info.value.size == size


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", None),
        ("/srv/objects", None),
        ("relative/dir", None),
        ("file:///srv/objects", None),
        ("s3://bucket", None),
        ("s3://bucket/some/prefix", None),
        ("s3:///prefix", "no bucket"),
        ("gs://bucket", "expected a directory or s3://"),
        ("file://", "no directory"),
    ],
)
def test_objects_settings(url: str, problem: str | None) -> None:
    found = url_problems(url)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0]
