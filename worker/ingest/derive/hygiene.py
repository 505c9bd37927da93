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
One pass over each body (the HTML parsed by libxml2 through lxml, then one walk of its
tree), so the cost stays linear.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Final

import lxml.html
from lxml import etree

HIDDEN_HTML_TEXT: Final = "hidden_html_text"
ZERO_WIDTH_CHARS: Final = "zero_width_chars"
BIDI_CONTROL_CHARS: Final = "bidi_control_chars"
TEXT_HTML_MISMATCH: Final = "text_html_mismatch"

# Hidden text shorter than this is layout (a &nbsp; in a hidden spacer), not a message.
MIN_HIDDEN_CHARS: Final = 3
# The mismatch needs enough words on both sides to say anything.
MIN_WORDS: Final = 12
MAX_MISSING: Final = 0.5
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
_NOT_TEXT: Final = frozenset({"script", "style", "head", "title", "template", "noscript"})
_NAMED: Final = {
    "white": "#ffffff",
    "black": "#000000",
    "red": "#ff0000",
    "transparent": "transparent",
}
_SHORT_HEX: Final = re.compile(r"#[0-9a-f]{3}")
_HEX: Final = re.compile(r"#[0-9a-f]{6}")
_RGB: Final = re.compile(r"rgba?\((\d+),(\d+),(\d+)(?:,([\d.]+))?\)")
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
    short = _SHORT_HEX.fullmatch(value)
    rgb = _RGB.fullmatch(value)
    if value in _NAMED:
        color: str | None = _NAMED[value]
    elif short:
        color = "#" + "".join(c * 2 for c in value[1:])
    elif _HEX.fullmatch(value):
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


def _style(value: str | None) -> dict[str, str]:
    declarations: dict[str, str] = {}
    for part in (value or "").split(";"):
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


def _hides(style: dict[str, str], hidden_attr: bool) -> bool:
    """Whether an element's own attributes make its content invisible."""
    opacity = _length(style.get("opacity"))
    size = _length(style.get("font-size"))
    return (
        hidden_attr
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


# (hidden, colour, background, not text) of an element; the document's defaults. The
# background is None where a stylesheet may set it (an element with a class).
_State = tuple[bool, str, str | None, bool]
_DOCUMENT: Final[_State] = (False, "#000000", "#ffffff", False)
_PARSER: Final = lxml.html.HTMLParser(huge_tree=True)


@lru_cache(maxsize=4096)
def _own(
    style_text: str | None, bgcolor: str | None, color_attr: str | None, hidden_attr: bool
) -> tuple[bool, str | None, str | None]:
    """What an element's own attributes say: (hides, colour, background). Cached: the
    elements of a message repeat a few styles many times."""
    style = _style(style_text)
    hides = _hides(style, hidden_attr)
    background = (
        _color(style.get("background-color"))
        or _color((style.get("background") or "").split(" ")[0])
        or _color(bgcolor)
    )
    if background == "transparent":
        background = None
    return hides, _color(style.get("color")) or _color(color_attr), background


def _state(element: lxml.html.HtmlElement, parent: _State) -> _State:
    """An element's state from its own attributes and its parent's."""
    attrs = element.attrib
    tag = element.tag
    if not attrs and tag not in _NOT_TEXT:
        return parent  # most elements: nothing of their own
    hidden, color, background, skip = parent
    hides, own_color, own_background = _own(
        attrs.get("style"), attrs.get("bgcolor"), attrs.get("color"), "hidden" in attrs
    )
    if own_background is not None:
        background = own_background
    elif attrs.get("class"):
        # A class may set the background (a button's white text on its class's colour,
        # even quoted with its stylesheet lost): not known, so not judged.
        background = None
    return hidden or hides, own_color or color, background, skip or tag in _NOT_TEXT


def read_html(html: str) -> tuple[str, int]:
    """The visible text of an HTML body and the count of hidden characters: one walk of
    the tree libxml2 builds (in C; the standard library's tokenizer cost ~35 us a tag)."""
    try:
        root = lxml.html.document_fromstring(html, parser=_PARSER)
    except (etree.ParserError, ValueError):
        return "", 0
    states: dict[object, _State] = {}
    visible: list[str] = []
    hidden_chars = 0

    def account(text: str | None, state: _State) -> None:
        nonlocal hidden_chars
        if not text or state[3]:
            return
        hidden, color, background, _ = state
        if hidden or (background is not None and _alike(color, background)):
            hidden_chars += len(text.strip())
        else:
            visible.append(text)

    for element in root.iter():
        parent = element.getparent()
        outer = states.get(parent, _DOCUMENT) if parent is not None else _DOCUMENT
        if isinstance(element.tag, str):
            state = _state(element, outer)
            account(element.text, state)
        else:
            state = outer  # a comment or processing instruction: its text is not shown
        states[element] = state
        account(element.tail, outer)
    return " ".join(visible), hidden_chars


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
    return set(_WORD.findall(text.casefold()))


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
