"""Terminal output to safe HTML: SGR colours become spans, every other byte is escaped text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

# Any escape sequence a terminal would act on: CSI (ESC [ ... final), OSC (ESC ] ... BEL or
# ESC \), other two-byte ESC sequences, and 8-bit CSI. Only SGR (CSI ... m) is interpreted;
# the rest is dropped, so a job cannot move a cursor, set a title or smuggle a hyperlink.
_ESCAPES = re.compile(
    r"\x1b\[(?P<csi>[0-?]*)(?P<inter>[ -/]*)(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b"
)
# Control characters other than tab have no place in a rendered line.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_NAMES = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
# The xterm palette for the 256-colour codes 0-15.
_BASIC = [
    "000000",
    "cd3131",
    "0dbc79",
    "e5e510",
    "2472c8",
    "bc3fbc",
    "11a8cd",
    "e5e5e5",
    "666666",
    "f14c4c",
    "23d18b",
    "f5f543",
    "3b8eea",
    "d670d6",
    "29b8db",
    "ffffff",
]


def _palette(n: int) -> str:
    """The hex colour of xterm's colour `n` (0-255)."""
    if n < 16:
        return _BASIC[n]
    if n < 232:
        n -= 16
        steps = (0, 95, 135, 175, 215, 255)
        r, g, b = steps[n // 36], steps[(n // 6) % 6], steps[n % 6]
        return f"{r:02x}{g:02x}{b:02x}"
    level = 8 + (n - 232) * 10
    return f"{level:02x}" * 3


@dataclass
class Style:
    """The SGR state that carries from one piece of output to the next."""

    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False
    fg: str = ""  # a class name (c-red) or a hex colour (#rrggbb)
    bg: str = ""

    def reset(self) -> None:
        self.bold = self.dim = self.italic = self.underline = False
        self.fg = self.bg = ""

    def attrs(self) -> str:
        """The span's attributes for this style; '' when it is plain."""
        classes = [
            name
            for name, on in (
                ("b", self.bold),
                ("d", self.dim),
                ("i", self.italic),
                ("u", self.underline),
            )
            if on
        ]
        styles = []
        for value, prefix, prop in ((self.fg, "c", "color"), (self.bg, "bg", "background")):
            if value.startswith("#"):
                styles.append(f"{prop}:{value}")
            elif value:
                classes.append(f"{prefix}-{value}")
        out = f' class="{" ".join(classes)}"' if classes else ""
        if styles:
            out += f' style="{";".join(styles)}"'
        return out


def _extended(codes: list[int], i: int) -> tuple[str, int]:
    """A 38/48 colour starting at codes[i] (the 5 or 2); returns (colour, codes consumed)."""
    if i < len(codes) and codes[i] == 5 and i + 1 < len(codes):
        n = codes[i + 1]
        return (f"#{_palette(n)}" if 0 <= n <= 255 else ""), 2
    if i < len(codes) and codes[i] == 2 and i + 3 < len(codes):
        rgb = codes[i + 1 : i + 4]
        if all(0 <= c <= 255 for c in rgb):
            return "#" + "".join(f"{c:02x}" for c in rgb), 4
        return "", 4
    return "", len(codes) - i  # malformed: ignore the rest of the sequence


def apply_sgr(style: Style, params: str) -> None:
    """Change `style` by the parameters of one SGR sequence (`1;31`, `38;5;208`, ``)."""
    try:
        codes = [int(p) if p else 0 for p in params.replace(":", ";").split(";")]
    except ValueError:
        return
    i = 0
    while i < len(codes):
        c = codes[i]
        i += 1
        if c == 0:
            style.reset()
        elif c == 1:
            style.bold = True
        elif c == 2:
            style.dim = True
        elif c == 3:
            style.italic = True
        elif c == 4:
            style.underline = True
        elif c == 22:
            style.bold = style.dim = False
        elif c == 23:
            style.italic = False
        elif c == 24:
            style.underline = False
        elif 30 <= c <= 37:
            style.fg = _NAMES[c - 30]
        elif 90 <= c <= 97:
            style.fg = "br-" + _NAMES[c - 90]
        elif c == 39:
            style.fg = ""
        elif 40 <= c <= 47:
            style.bg = _NAMES[c - 40]
        elif 100 <= c <= 107:
            style.bg = "br-" + _NAMES[c - 100]
        elif c == 49:
            style.bg = ""
        elif c in (38, 48):
            colour, used = _extended(codes, i)
            i += used
            if c == 38:
                style.fg = colour
            else:
                style.bg = colour


@dataclass
class Renderer:
    """Renders lines of one stream; colours set on one line carry on to the next."""

    style: Style = field(default_factory=Style)

    def line(self, text: str) -> str:
        """One line (no newline) as HTML: escaped text in spans for its colours."""
        # a carriage return redraws the line: show what the terminal would show at the end
        if "\r" in text:
            text = text.rstrip("\r").rsplit("\r", 1)[-1]
        out: list[str] = []
        pos = 0
        for m in _ESCAPES.finditer(text):
            self._text(out, text[pos : m.start()])
            pos = m.end()
            if m.group("final") == "m" and not m.group("inter"):
                apply_sgr(self.style, m.group("csi"))
        self._text(out, text[pos:])
        return "".join(out)

    def _text(self, out: list[str], text: str) -> None:
        text = _CONTROLS.sub("", text)
        if not text:
            return
        attrs = self.style.attrs()
        safe = escape(text, quote=True)
        out.append(f"<span{attrs}>{safe}</span>" if attrs else safe)


def plain(text: str) -> str:
    """The text a person reads, with every escape sequence and control character removed."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def to_html(text: str) -> str:
    """A whole piece of output as HTML lines joined by newlines (for tests and small uses)."""
    r = Renderer()
    return "\n".join(r.line(line) for line in text.split("\n"))
