"""The sender's own name under a reply ("-Carl", "Alex", "Cheers,\\n-- Jan"), as a sign-off.

Role: the step of ``worker.ingest.derive.reply`` after ``signature`` on each block of new
text. A name alone is only a signature when it is the sender's: the From display name
anchors the rule, so that a short last line that happens to be a name ("Ask Maria") is
never cut on its shape alone (talon, too, reads the sender's name to find signatures). A
postscript written under the name ("PS. ...", a footnote "[1] http://...") stays. No I/O.
"""

from __future__ import annotations

import re
from typing import Final

# A name line: the name alone or with a surname (up to three words), or a dash and the
# name with an aside ("-Carl (who wants to reply to more mail...)").
_MAX_NAME_WORDS: Final = 3
_MAX_NAME_LINE_CHARS: Final = 40
_DASHES: Final = "-~—–"
# A closing alone above the name ("Happy hacking,"): a short line ending with a comma.
_MAX_CLOSING_CHARS: Final = 40
_MAX_CLOSING_WORDS: Final = 4
_POSTSCRIPTS: Final = ("ps", "p.s", "pps", "p.p.s")
_MIN_PREFIX_CHARS: Final = 3
_MIN_NAME_CHARS: Final = 2
# "jane.doe", "jane_doe", "jane-doe+tag", "jdoe42": the words of a local part.
_LOCAL_PART_WORDS: Final = re.compile(r"[^A-Za-z]+")


def sender_names(display_name: str | None, address: str | None = None) -> frozenset[str]:
    """The lower-cased words a sender may sign with: those of the From display name, and
    of the address's local part, where a nickname often lives ("Mikey" of
    mikey@neuling.org under "Michael Neuling")."""
    words = [word.strip("\"'.,()<>") for word in (display_name or "").split()]
    if address and "@" in address:
        words.extend(_LOCAL_PART_WORDS.split(address.rsplit("@", 1)[0]))
    return frozenset(
        word.lower() for word in words if len(word) >= _MIN_NAME_CHARS and word.isalpha()
    )


def signed_name_span(
    lines: list[str], names: frozenset[str], *, text_above: bool = False
) -> tuple[int, int] | None:
    """The lines ``[start, end)`` of a sign-off with the sender's name at the end of
    ``lines`` (the last block of new text, trimmed), before any postscript; None without
    one. ``text_above``: new text stands in blocks above this one."""
    if not names:
        return None
    paragraphs = _paragraphs(lines)
    last = len(paragraphs) - 1
    while last > 0 and _is_postscript(lines[paragraphs[last][0]]):
        last -= 1
    if last < 0 or (last == 0 and not text_above):
        return None  # the name is not under any text
    start, end = paragraphs[last]
    if not _is_signed(lines[start:end], names):
        return None
    resume = paragraphs[last + 1][0] if last + 1 < len(paragraphs) else len(lines)
    if last > 1:
        above_start, above_end = paragraphs[last - 1]
        if above_end - above_start == 1 and _is_closing(lines[above_start]):
            start = above_start
    return start, resume


def _paragraphs(lines: list[str]) -> list[tuple[int, int]]:
    """The runs of non-blank lines, as ``(start, end)``."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for index, line in enumerate(lines):
        if line.strip() and start is None:
            start = index
        elif not line.strip() and start is not None:
            runs.append((start, index))
            start = None
    if start is not None:
        runs.append((start, len(lines)))
    return runs


def _is_signed(paragraph: list[str], names: frozenset[str]) -> bool:
    """A name line, a dashed name with a second line to its aside, or a closing over a
    name line."""
    if len(paragraph) == 1:
        return _names_sender(paragraph[0], names)
    if len(paragraph) != 2:
        return False
    first, second = paragraph
    if _is_closing(first):
        return _names_sender(second, names)
    return first.strip()[0] in _DASHES and "(" in first and _names_sender(first, names)


def _names_sender(line: str, names: frozenset[str]) -> bool:
    text = line.strip()
    dashed = text[0] in _DASHES
    words = text.lstrip(_DASHES + " ").split()
    if not words:
        return False
    if dashed:
        # "-Carl", "-Carl (an aside)" or the whole name ("-Todd Alan Pitts").
        rest = words[1:]
        whole_name = all(word.strip(".,").lower() in names for word in words)
        aside = bool(rest) and rest[0].startswith("(")
        if rest and not aside and not whole_name and len(words) > _MAX_NAME_WORDS - 1:
            return False
    elif len(words) > _MAX_NAME_WORDS or len(text) > _MAX_NAME_LINE_CHARS:
        return False
    first = words[0].strip(".,!").lower()
    if len(first) == 1 and len(words) == 1:
        return any(name[0] == first for name in names)  # an initial: "- k", "g."
    return first in names or (
        len(first) >= _MIN_PREFIX_CHARS and any(name.startswith(first) for name in names)
    )


def _is_closing(line: str) -> bool:
    text = line.strip()
    return (
        text.endswith(",")
        and len(text) <= _MAX_CLOSING_CHARS
        and len(text.split()) <= _MAX_CLOSING_WORDS
    )


def _is_postscript(line: str) -> bool:
    lower = line.strip().lower()
    if lower.startswith("[") and len(lower) > 2 and lower[2] == "]":
        return True  # a footnote: "[1] http://...", "[*] Yes, ..."
    for mark in _POSTSCRIPTS:
        if lower.startswith(mark) and not lower[len(mark) : len(mark) + 1].isalpha():
            return True
    return False
