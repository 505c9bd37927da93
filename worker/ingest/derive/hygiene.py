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
One pass over each body (the HTML parsed by libxml2 through lxml and pruned in C, see
:func:`read_html`), so the cost stays linear. The characters looked for are not ASCII: an
ASCII body (``str.isascii`` is a flag CPython keeps, not a scan) skips those scans, and its
words are found by a plain ``[a-z]`` class rather than by Unicode categories.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Final

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
# Either kind: one scan of a body that has neither (most mail) instead of two.
_INVISIBLE: Final = re.compile(
    "[\u200b\u200c\u200d\u2060-\u2064\u180e\ufeff\U000e0000-\U000e007f\u202a-\u202e\u2066-\u2069]"
)
# Control characters removed from stored text (tab, newline and carriage return kept),
# with the invisible and reordering characters above but the joiners (writing needs them).
_STRIP: Final = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2060-\u2064\u180e\ufeff"
    "\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)
_WORD: Final = re.compile(r"[^\W\d_]{3,}")
# The same words in ASCII text, lower-cased (the letters of ASCII are A-Z and a-z).
_ASCII_WORD: Final = re.compile(r"[a-z]{3,}")
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
# libxml2's parser without lxml.html's element classes (a Python look-up per element).
_PARSER: Final = etree.HTMLParser(huge_tree=True)
# The attributes that may hide text or set a colour (a class only ever makes the
# background unknown, which hides nothing).
_STYLING: Final = frozenset({"style", "hidden", "bgcolor", "color"})
_TEXT_XPATH: Final = etree.XPath("descendant-or-self::text()", smart_strings=False)
# Past this many colour and background pairs, walking the tree is cheaper than the pairs.
MAX_COLOUR_PAIRS: Final = 1024


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


def _own_of(element: etree._Element) -> tuple[bool, str | None, str | None]:
    get = element.get
    return _own(get("style"), get("bgcolor"), get("color"), get("hidden") is not None)


def _state(element: etree._Element, parent: _State) -> _State:
    """An element's state from its own attributes and its parent's."""
    attrs = element.attrib
    tag = element.tag
    if not attrs and tag not in _NOT_TEXT:
        return parent  # most elements: nothing of their own
    hidden, color, background, skip = parent
    hides, own_color, own_background = _own_of(element)
    if own_background is not None:
        background = own_background
    elif attrs.get("class"):
        # A class may set the background (a button's white text on its class's colour,
        # even quoted with its stylesheet lost): not known, so not judged.
        background = None
    return hidden or hides, own_color or color, background, skip or tag in _NOT_TEXT


def _walk(root: etree._Element) -> tuple[list[str], int]:
    """The visible texts and hidden characters of a tree, each element's state from its
    parent's: one Python step per element and text, in document order."""
    stack: list[_State] = [_DOCUMENT]  # the states of the open elements
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

    # A comment's or processing instruction's own text is not shown; its tail is.
    for event, node in etree.iterwalk(root, events=("start", "end", "comment", "pi")):
        if event == "start":
            stack.append(_state(node, stack[-1]))
            account(node.text, stack[-1])
            continue
        if event == "end":
            stack.pop()
        account(node.tail, stack[-1])
    return visible, hidden_chars


def _colours_may_hide(owns: list[tuple[bool, str | None, str | None]]) -> bool:
    """Whether any colour set in the document is alike any background set in it (or the
    defaults): if not, no text can be the colour of what is under it."""
    colours = {_DOCUMENT[1], *(colour for _, colour, _ in owns if colour)}
    page = "#ffffff"  # _DOCUMENT's background
    backgrounds = {page, *(background for _, _, background in owns if background)}
    if len(colours) * len(backgrounds) > MAX_COLOUR_PAIRS:
        return True
    return any(_alike(c, b) for c in colours for b in backgrounds)


def read_html(html: str) -> tuple[str, int]:
    """The visible text of an HTML body and the count of hidden characters, from the tree
    libxml2 builds (in C; the standard library's tokenizer cost ~35 us a tag).

    The tree is pruned in C where it can be: what is never text (``script``, ``style``,
    ...) is emptied, then each element that hides its content, innermost first, gives its
    remaining text's length and is emptied (tails kept, so no text node merges with
    another). What is left is visible, unless a colour in the document is alike a
    background: only then is every element's state walked in Python."""
    try:
        root = etree.fromstring(html, _PARSER)
    except (etree.ParserError, ValueError):
        return "", 0
    if root is None:
        return "", 0  # nothing but comments or blanks
    for element in reversed(list(root.iter(*_NOT_TEXT))):
        element.clear(keep_tail=True)
    styled = [e for e in root.iter(etree.Element) if not _STYLING.isdisjoint(e.keys())]
    owns = [_own_of(element) for element in styled]
    hidden_chars = 0
    for element, own in zip(reversed(styled), reversed(owns), strict=True):
        if own[0]:
            hidden_chars += sum(len(text.strip()) for text in _TEXT_XPATH(element))
            element.clear(keep_tail=True)
    if _colours_may_hide(owns):
        visible, same_colour = _walk(root)
        return " ".join(visible), hidden_chars + same_colour
    return " ".join(_TEXT_XPATH(root)), hidden_chars


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
    if text.isascii():
        return False
    for match in _ZERO_WIDTH.finditer(text):
        char, index = match.group(), match.start()
        if char == "\ufeff" and index == 0:
            continue  # a byte-order mark
        if char in "\u200c\u200d" and _joiner_is_writing(text, index):
            continue
        return True
    return False


def _words(text: str) -> set[str]:
    if text.isascii():
        return set(_ASCII_WORD.findall(text.lower()))
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
    suspects = [
        part
        for part in (subject, text, html)
        if part and not part.isascii() and _INVISIBLE.search(part)
    ]
    if any(has_zero_width(part) for part in suspects):
        flags.append(ZERO_WIDTH_CHARS)
    if any(_BIDI.search(part) for part in suspects):
        flags.append(BIDI_CONTROL_CHARS)
    if text and html and mismatched(text, visible_html):
        flags.append(TEXT_HTML_MISMATCH)
    return flags
