"""The ANSI-to-HTML renderer: colours become spans, every other byte is escaped or dropped."""

from __future__ import annotations

import pytest

from corral.dashboard.ansi import Renderer, plain, to_html


def test_html_is_escaped() -> None:
    assert to_html("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert to_html("a & b \"c\" 'd'") == "a &amp; b &quot;c&quot; &#x27;d&#x27;"


def test_sgr_colours_become_spans_with_escaped_text() -> None:
    assert to_html("\x1b[31m<b>\x1b[0m ok") == '<span class="c-red">&lt;b&gt;</span> ok'
    assert to_html("\x1b[1;92;44mx") == '<span class="b c-br-green bg-blue">x</span>'
    assert to_html("\x1b[1mA\x1b[22mB") == '<span class="b">A</span>B'
    assert to_html("\x1b[33mA\x1b[39mB\x1b[m") == '<span class="c-yellow">A</span>B'


def test_extended_colours_are_computed_never_copied() -> None:
    assert to_html("\x1b[38;5;196mx") == '<span style="color:#ff0000">x</span>'
    assert to_html("\x1b[38;5;244mx") == '<span style="color:#808080">x</span>'
    assert to_html("\x1b[48;2;1;2;3mx") == '<span style="background:#010203">x</span>'
    # out of range or malformed: no colour at all, and nothing of it in the page
    assert to_html("\x1b[38;2;999;0;0mx") == "x"
    # a quote is an intermediate byte: the sequence ends at the next letter and is dropped
    assert to_html('\x1b[38;5;"onmouseover=alert(1)mx') == "nmouseover=alert(1)mx"
    assert to_html("\x1b[38;5mx") == "x"


@pytest.mark.parametrize(
    "sequence",
    [
        "\x1b[2J",  # clear the screen
        "\x1b[10;10H",  # move the cursor
        "\x1b[?25l",  # hide the cursor
        "\x1b]0;a title\x07",  # set the window title
        "\x1b]8;;http://evil.example\x1b\\",  # a hyperlink
        "\x1bPq#0;2;0;0;0\x1b\\",  # DCS (sixel)
        "\x9b31m",  # 8-bit CSI
        "\x1b(B",  # charset
        "\x00\x07\x08\x7f",  # NUL, bell, backspace, delete
    ],
)
def test_other_sequences_and_controls_are_dropped(sequence: str) -> None:
    html = to_html(f"a{sequence}b")
    assert html == "ab"
    assert plain(f"a{sequence}b") == "ab"


def test_a_lone_escape_at_the_end_is_dropped() -> None:
    assert to_html("a\x1b") == "a"


def test_tabs_stay_and_carriage_returns_redraw_the_line() -> None:
    assert to_html("a\tb") == "a\tb"
    assert to_html("10%\r50%\r100%") == "100%"
    assert to_html("done\r\n") == "done\n"


def test_colours_carry_to_the_next_line_until_reset() -> None:
    r = Renderer()
    assert r.line("\x1b[32mgreen") == '<span class="c-green">green</span>'
    assert r.line("still") == '<span class="c-green">still</span>'
    assert r.line("\x1b[0mplain") == "plain"


def test_escaping_survives_every_style() -> None:
    evil = '"><img src=x onerror=alert(1)>'
    for codes in ("1", "31", "38;5;9", "48;2;9;9;9", "1;3;4;2"):
        html = to_html(f"\x1b[{codes}m{evil}")
        assert "<img" not in html and "&lt;img" in html and "&quot;&gt;" in html
