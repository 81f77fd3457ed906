"""The streaming masker: secrets hidden whole, however the output is cut into chunks."""

from __future__ import annotations

import pytest

from corral.worker.masking import MASK, Masker

SECRET = "s3cr3t-V4LUE"


def stream(masker: Masker, pieces: list[str]) -> str:
    return "".join(masker.feed(p) for p in pieces) + masker.flush()


def test_no_secrets_passes_text_through_untouched() -> None:
    m = Masker([])
    assert not m
    assert m.feed("a s3cr3t") == "a s3cr3t"
    assert m.flush() == ""


def test_a_whole_text_is_masked() -> None:
    m = Masker([SECRET])
    assert m.mask(f"key={SECRET}; again {SECRET}.") == f"key={MASK}; again {MASK}."


@pytest.mark.parametrize("cut", range(1, len("before " + SECRET + " after")))
def test_a_secret_split_at_any_point_between_two_chunks_is_masked(cut: int) -> None:
    text = "before " + SECRET + " after"
    out = stream(Masker([SECRET]), [text[:cut], text[cut:]])
    assert out == f"before {MASK} after"


def test_a_secret_fed_one_character_at_a_time_is_masked() -> None:
    text = f"x{SECRET}y{SECRET}"
    assert stream(Masker([SECRET]), list(text)) == f"x{MASK}y{MASK}"


def test_text_that_only_starts_like_a_secret_comes_out_unchanged() -> None:
    m = Masker([SECRET])
    first = m.feed("value s3cr3t-")
    assert first == "value "  # held back: it may go on to be the secret
    assert m.feed("nothing") == "s3cr3t-nothing"
    assert m.flush() == ""


def test_a_held_tail_at_the_end_of_the_stream_is_released_by_flush() -> None:
    m = Masker([SECRET])
    assert m.feed("end s3cr") == "end "
    assert m.flush() == "s3cr"


def test_a_multi_line_secret_is_masked_whole_and_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nAAAABBBBCCCC\nDDDDEEEE\n-----END KEY-----"
    m = Masker([key])
    assert stream(m, [f"k:{key[:25]}", key[25:], "!"]) == f"k:{MASK}!"
    # printed line by line with other line endings, each line is still hidden
    crlf = key.replace("\n", "\r\n")
    out = stream(Masker([key]), [crlf[:10], crlf[10:]])
    assert "AAAABBBBCCCC" not in out and "DDDDEEEE" not in out and "BEGIN KEY" not in out


def test_a_secret_that_contains_another_is_masked_whole() -> None:
    short, long = "abc123", "abc123-and-more"
    for cut in range(1, len(long)):
        out = stream(Masker([short, long]), [long[:cut], long[cut:], " and abc123"])
        assert out == f"{MASK} and {MASK}", cut


def test_held_text_is_bounded_by_the_longest_secret() -> None:
    m = Masker([SECRET])
    out = m.feed("x" * 10_000 + "s3cr3t")
    assert len(out) == 10_000
    assert m.feed("-V4LUE tail") == f"{MASK} tail"


def test_several_secrets_and_regex_characters_in_values() -> None:
    values = ["a.b*c", "(x|y)", "p@ss"]
    text = "1 a.b*c 2 (x|y) 3 p@ss 4 axbyc"
    assert stream(Masker(values), [text[:9], text[9:17], text[17:]]) == (
        f"1 {MASK} 2 {MASK} 3 {MASK} 4 axbyc"
    )


def test_empty_values_are_ignored() -> None:
    assert not Masker(["", ""])
