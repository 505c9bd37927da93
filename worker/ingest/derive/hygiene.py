"""Content hygiene: what in an email an agent could read but a person would not see.

Prompt injection hides in mail in a few known ways; each is a flag on the email (and in
the hand-off) so the platform can quarantine or strip, never a silent rewrite of bodies:

- ``hidden_html_text``: HTML text a reader cannot see: ``display:none``,
  ``visibility:hidden``, ``opacity:0``, the ``hidden`` attribute, a font size of at most
  1px, text the colour of its background, or positioned / indented off-screen;
- ``zero_width_chars``: zero-width and other invisible characters (U+200B, U+2060,
  U+FEFF not leading, tag characters U+E0000-E007F); a joiner inside an emoji sequence or
  between letters of scripts that need it (Arabic, Indic) is writing, not hiding;
- ``bidi_control_chars``: embedding, override and isolate controls (U+202A-202E,
  U+2066-2069) that reorder what is displayed (the marks U+200E/200F are ordinary
  right-to-left writing);
- ``text_html_mismatch``: the text part and the HTML part's visible text share under
  half of their words: one says something the other does not.

:func:`clean_text` is how the extracted texts are stored (NFC, no control characters).
One pass over each body (the HTML with the standard library's tokenizer, its element
stack searched a bounded depth for an end tag's match), so the cost stays linear.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from typing import Final

HIDDEN_HTML_TEXT: Final = "hidden_html_text"
ZERO_WIDTH_CHARS: Final = "zero_width_chars"
BIDI_CONTROL_CHARS: Final = "bidi_control_chars"
TEXT_HTML_MISMATCH: Final = "text_html_mismatch"

# Hidden text shorter than this is layout (a &nbsp; in a hidden spacer), not a message.
MIN_HIDDEN_CHARS: Final = 3
# The mismatch needs enough words on both sides to say anything.
MIN_WORDS: Final = 12
MAX_MISSING: Final = 0.5
# How far down the element stack an end tag's start is looked for (keeps it linear).
END_TAG_SEARCH: Final = 12
OFF_SCREEN_PX: Final = -500.0
# Colour channels this close (of 255) look the same.
ALIKE: Final = 8

_ZERO_WIDTH: Final = re.compile(
    "[\u200b\u200c\u200d\u2060-\u2064\u180e\ufeff\U000e0000-\U000e007f]"
)
_BIDI: Final = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Control characters removed from stored text (tab, newline and carriage return kept),
# with the invisible and reordering characters above but the joiners (writing needs them).
_STRIP: Final = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2060-\u2064\u180e\ufeff"
    "\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)
_WORD: Final = re.compile(r"[^\W\d_]{3,}")
_VOID: Final = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)
_NOT_TEXT: Final = frozenset({"script", "style", "head", "title", "template", "noscript"})
_NAMED: Final = {
    "white": "#ffffff",
    "black": "#000000",
    "red": "#ff0000",
    "transparent": "transparent",
}
_PX: Final = re.compile(r"^(-?\d+(?:\.\d+)?)(px|pt|em|rem|%)?$")


def clean_text(text: str | None) -> str | None:
    """NFC-normalised, without control characters (tabs and line breaks kept)."""
    if text is None:
        return None
    return _STRIP.sub("", unicodedata.normalize("NFC", text))


def _color(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().lower().replace(" ", "").removesuffix("!important")
    short = re.fullmatch(r"#[0-9a-f]{3}", value)
    rgb = re.fullmatch(r"rgba?\((\d+),(\d+),(\d+)(?:,([\d.]+))?\)", value)
    if value in _NAMED:
        color: str | None = _NAMED[value]
    elif short:
        color = "#" + "".join(c * 2 for c in value[1:])
    elif re.fullmatch(r"#[0-9a-f]{6}", value):
        color = value
    elif rgb and rgb.group(4) is not None and float(rgb.group(4)) == 0:
        color = "transparent"
    elif rgb:
        color = "#" + "".join(f"{min(int(rgb.group(i)), 255):02x}" for i in (1, 2, 3))
    else:
        color = None
    return color


def _length(value: str | None) -> tuple[float, str] | None:
    if not value:
        return None
    match = _PX.match(value.strip().lower().removesuffix("!important").strip())
    if not match:
        return None
    return float(match.group(1)), match.group(2) or "px"


def _style(attrs: list[tuple[str, str | None]]) -> dict[str, str]:
    declarations: dict[str, str] = {}
    for name, value in attrs:
        if name == "style" and value:
            for part in value.split(";"):
                key, sep, val = part.partition(":")
                if sep:
                    declarations[key.strip().lower()] = val.strip().lower()
    return declarations


def _off_screen(style: dict[str, str]) -> bool:
    indent = _length(style.get("text-indent"))
    if indent is not None and indent[1] == "px" and indent[0] <= OFF_SCREEN_PX:
        return True
    if style.get("position", "") not in ("absolute", "fixed"):
        return False
    offsets = (_length(style.get(side)) for side in ("left", "top"))
    return any(o is not None and o[1] == "px" and o[0] <= OFF_SCREEN_PX for o in offsets)


def _hides(style: dict[str, str], attrs: dict[str, str | None]) -> bool:
    """Whether an element's own attributes make its content invisible."""
    opacity = _length(style.get("opacity"))
    size = _length(style.get("font-size"))
    return (
        "hidden" in attrs
        or style.get("display", "").startswith("none")
        or style.get("visibility", "").startswith(("hidden", "collapse"))
        or (opacity is not None and opacity[0] == 0)
        or (size is not None and (size[0] <= 0 or (size[1] in ("px", "pt") and size[0] <= 1)))
        or _off_screen(style)
    )


def _alike(color: str, background: str) -> bool:
    """Colours a reader cannot tell apart (each channel within ``ALIKE``): #fefefe text on
    white is as hidden as #ffffff."""
    if color == background:
        return True
    if not (color.startswith("#") and background.startswith("#")):
        return False
    return all(
        abs(int(color[i : i + 2], 16) - int(background[i : i + 2], 16)) <= ALIKE for i in (1, 3, 5)
    )


class _Reader(HTMLParser):
    """One pass: the visible text, and how much text is hidden."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # (tag, hidden, colour, background) per open element; the document's defaults. The
        # background is None where a stylesheet may set it (an element with a class).
        self.stack: list[tuple[str, bool, str, str | None]] = [("", False, "#000000", "#ffffff")]
        self.visible: list[str] = []
        self.hidden_chars = 0
        self.skip = 0  # inside script/style/head...

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        if tag in _NOT_TEXT:
            self.skip += 1
        _, hidden, color, background = self.stack[-1]
        style = _style(attrs)
        named = dict(attrs)
        hidden = hidden or _hides(style, named)
        own_background = (
            _color(style.get("background-color"))
            or _color((style.get("background") or "").split(" ")[0])
            or _color(named.get("bgcolor"))
        )
        if own_background and own_background != "transparent":
            background = own_background
        elif named.get("class"):
            # A class may set the background (a button's white text on its class's
            # colour, even quoted with its stylesheet lost): not known, so not judged.
            background = None
        color = _color(style.get("color")) or _color(named.get("color")) or color
        self.stack.append((tag, hidden, color, background))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        depth = len(self.stack)
        for index in range(depth - 1, max(depth - 1 - END_TAG_SEARCH, 0), -1):
            if self.stack[index][0] == tag:
                for closed, *_ in self.stack[index:]:
                    if closed in _NOT_TEXT:
                        self.skip = max(self.skip - 1, 0)
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        _, hidden, color, background = self.stack[-1]
        if hidden or (background is not None and _alike(color, background)):
            self.hidden_chars += len(data.strip())
        else:
            self.visible.append(data)


def read_html(html: str) -> tuple[str, int]:
    """The visible text of an HTML body and the count of hidden characters."""
    reader = _Reader()
    try:
        reader.feed(html)
        reader.close()
    except Exception:  # the tokenizer is tolerant; anything else is no verdict
        return "", 0
    return " ".join(reader.visible), reader.hidden_chars


def _joiner_is_writing(text: str, index: int) -> bool:
    before = text[index - 1] if index > 0 else ""
    after = text[index + 1] if index + 1 < len(text) else ""
    for neighbour in (before, after):
        if neighbour and (
            ord(neighbour) >= 0x1F000 or unicodedata.category(neighbour) in ("So", "Sk", "Mn")
        ):
            return True
    return bool(before and after and before.isalpha() and after.isalpha() and ord(before) > 0x58F)


def has_zero_width(text: str) -> bool:
    for match in _ZERO_WIDTH.finditer(text):
        char, index = match.group(), match.start()
        if char == "\ufeff" and index == 0:
            continue  # a byte-order mark
        if char in "\u200c\u200d" and _joiner_is_writing(text, index):
            continue
        return True
    return False


def _words(text: str) -> set[str]:
    return {word.casefold() for word in _WORD.findall(text)}


def mismatched(text: str, visible_html: str) -> bool:
    """Whether the two parts share under half of the words of either."""
    plain, html = _words(text), _words(visible_html)
    if len(plain) < MIN_WORDS or len(html) < MIN_WORDS:
        return False
    shared = len(plain & html)
    return shared < (1 - MAX_MISSING) * len(plain) or shared < (1 - MAX_MISSING) * len(html)


def hygiene_flags(subject: str | None, text: str | None, html: str | None) -> list[str]:
    """The flags of an email's content, in a fixed order."""
    flags: list[str] = []
    visible_html, hidden = read_html(html) if html else ("", 0)
    if hidden >= MIN_HIDDEN_CHARS:
        flags.append(HIDDEN_HTML_TEXT)
    bodies = [part for part in (subject, text, html) if part]
    if any(has_zero_width(part) for part in bodies):
        flags.append(ZERO_WIDTH_CHARS)
    if any(_BIDI.search(part) for part in bodies):
        flags.append(BIDI_CONTROL_CHARS)
    if text and html and mismatched(text, visible_html):
        flags.append(TEXT_HTML_MISMATCH)
    return flags
