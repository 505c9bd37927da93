"""Where the signature of a block of new text starts, if it has one.

Role: the last step of ``worker.ingest.derive.reply`` on each block of new text. Three
shapes, from the surest to the most careful: the ``-- `` delimiter (RFC 3676), a
phone's "Sent from my iPhone" line near the end, and a closing ("Best regards,") with a
few short lines under it at the very end. A closing is only cut when what follows it
looks like a name and contact lines and text stands above it, so that a reply's own
last sentence is never taken for a signature.
"""

from __future__ import annotations

from typing import Final

from worker.ingest.derive.reply_words import SENT_FROM, THANKS_WITH_COMMA, VALEDICTIONS

# The line above a signature: RFC 3676's "-- ", also without its space (archives and
# some clients drop it) and as an em dash.
_DELIMITERS: Final = ("--", "-- ", "—")
# A "Sent from my ..." line is one of the last lines of a block.
_SENT_FROM_LAST_LINES: Final = 3
_MAX_SENT_FROM_CHARS: Final = 80
# A sign-off: the closing and at most this many short lines under it (name, title,
# company, phone); longer lines are text, not a signature.
_MAX_SIGNOFF_LINES: Final = 6
_MAX_SIGNOFF_LINE_CHARS: Final = 80
_MAX_CLOSING_CHARS: Final = 40
# Under "Thanks,": a name, perhaps with a title.
_MAX_THANKS_LINES: Final = 2
_MAX_NAME_CHARS: Final = 40
_MAX_NAME_WORDS: Final = 3
# "---" only delimits a signature of at most this many lines (git puts one over a patch).
_MAX_DASHED_TAIL_LINES: Final = 3


def signature_start(lines: list[str], *, text_above: bool = False) -> int | None:
    """The index of the first line of the signature in ``lines`` (a block of new
    text, blank lines at its ends removed), or None. ``text_above``: new text stands in
    blocks above this one, so a block that opens with "-- " is a signature as a whole."""
    # Each shape is looked for above the one found before it: a sign-off often stands
    # over a "-- " block ("Cordialement,\nClaire" then "-- \nClaire Martin, Example Ltd.").
    cut = _delimiter_start(lines, 0 if text_above else 1)
    end = cut if cut is not None else len(lines)
    sent_from = _sent_from_start(lines, end)
    if sent_from is not None:
        cut = end = sent_from
    signoff = _signoff_start(lines, end)
    return signoff if signoff is not None else cut


def _delimiter_start(lines: list[str], first: int) -> int | None:
    """The first delimiter line at or after ``first`` (a block that is only a signature
    is not one when nothing stands above it: that would leave no text at all)."""
    for index in range(first, len(lines)):
        text = lines[index].strip()  # " --" too: some indent it
        if text in _DELIMITERS or (text == "---" and _short_tail(lines, index + 1)):
            return index
    return None


def _short_tail(lines: list[str], start: int) -> bool:
    """A few short lines to the end ("---\n~Randy"), not a patch's diffstat under git's
    "---"."""
    tail = [line for line in lines[start:] if line.strip()]
    return 0 < len(tail) <= _MAX_DASHED_TAIL_LINES and all(
        len(line) <= _MAX_SIGNOFF_LINE_CHARS and "|" not in line for line in tail
    )


def _sent_from_start(lines: list[str], end: int) -> int | None:
    seen = 0
    for index in range(end - 1, -1, -1):
        text = lines[index].strip()
        if not text:
            continue
        seen += 1
        if seen > _SENT_FROM_LAST_LINES:
            return None
        lower = text.lower()
        if len(lower) <= _MAX_SENT_FROM_CHARS and lower.startswith(SENT_FROM):
            return index
    return None


def _signoff_start(lines: list[str], end: int) -> int | None:
    """A closing line followed (up to ``end``) by a few short lines, with text above."""
    under = 0
    for index in range(end - 1, -1, -1):
        text = lines[index].strip()
        if not text:
            continue
        lower = text.lower()
        if len(lower) <= _MAX_CLOSING_CHARS:
            closing = _closing_of(text).lower().rstrip(" ,.!;")
            if closing in VALEDICTIONS and _has_text_above(lines, index):
                return index
            # "Thanks," over a name, or last with the name in a "-- " block under it.
            thanks = lower in THANKS_WITH_COMMA and under <= _MAX_THANKS_LINES
            if thanks and _short_lines(lines, index + 1, end, _MAX_NAME_CHARS):
                return index if _has_text_above(lines, index) else None
        under += 1
        if under > _MAX_SIGNOFF_LINES or len(text) > _MAX_SIGNOFF_LINE_CHARS:
            return None
    return None


def _closing_of(text: str) -> str:
    """The closing of a line, also of one that carries the name after " -- " or ", "
    ("Best regards -- Gerard", "cheers, Joe"), where the name is capitalised words and
    nothing else."""
    for between in (" -- ", ", "):  # "cheers, Joe" too
        closing, found, name = text.partition(between)
        words = name.split()
        if found and 0 < len(words) <= _MAX_NAME_WORDS and all(w[:1].isupper() for w in words):
            return closing
    return text


def _short_lines(lines: list[str], start: int, end: int, limit: int) -> bool:
    return all(len(lines[index].strip()) <= limit for index in range(start, end))


def _has_text_above(lines: list[str], index: int) -> bool:
    return any(lines[above].strip() for above in range(index))
