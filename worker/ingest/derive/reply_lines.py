"""What a line of a text body is: quoted, an attribution, a header block, a separator.

Role: the per-line tests of ``worker.ingest.derive.reply``'s single pass. Each test looks
at a bounded number of bounded lines with ``str`` methods and set lookups (a regular
expression only where its input is a capped line and it has no nested repetition), so
a test costs a constant and the pass is linear in the body.

Ideas from talon's quotation module (Apache-2.0: mailgun/talon, ``quotations.py``): mark
each line, then read the marks; an attribution may be wrapped over up to three lines.
The code and the word tables (``reply_words``) are ours.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Final

from worker.ingest.derive.reply_words import (
    ATTRIBUTION_VERBS,
    FORWARD_WORDS,
    FROM_LABELS,
    ORIGINAL_MESSAGE_WORDS,
    OTHER_LABELS,
    SCRUBBED_PART_WORDS,
)

# An attribution is a short line or two ("On Mon, Jan 5, 2026 at 9:00 AM Ana Lima
# <ana@example.com> wrote:"); longer candidates are not attributions, and the cap
# bounds each test.
MAX_ATTRIBUTION_CHARS: Final = 400
MAX_ATTRIBUTION_LINES: Final = 3
# A header label ("Gesendet:", "보낸 사람:") sits in the first characters of its line.
_MAX_LABEL_CHARS: Final = 24
# A header block: "From:" and another label within this many lines (values wrap).
_HEADER_BLOCK_WINDOW: Final = 6
# A time ("9:00", "14:32") or a year: what makes "X wrote:" an attribution, not prose.
_DATE: Final = re.compile(r"\d{1,2}[:.h]\d{2}|\b(?:19|20)\d{2}\b|\d{4}[年년]")
# An address spelled out against harvesters ("ana at example.org"), as list archives and
# some clients write it.
_SPELLED_ADDRESS: Final = re.compile(r"\w at [a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b")
# Supercite quotes with the author's initials ("LK> "), at most this many.
_MAX_SUPERCITE_INITIALS: Final = 4
_MAX_SUPERCITE_NAME: Final = 12
# A quote line wrapped by the client: the quoted line is long, its tail short.
_MIN_WRAPPED_QUOTE_CHARS: Final = 60
_MAX_QUOTE_TAIL_CHARS: Final = 40
# Only separators like "-----Original Message-----" or "---------- Forwarded message
# ---------": dashes (or underscores, equals signs), a few words, maybe dashes again.
_SEPARATOR_MAX_CHARS: Final = 80
# Gmail wraps right-to-left attributions (Hebrew, Arabic) in direction marks, also after
# the final colon.
_BIDI_AND_SPACE: Final = " \t\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


class Mark(Enum):
    TEXT = "text"
    BLANK = "blank"
    QUOTED = "quoted"  # "> ..."


def mark(line: str) -> Mark:
    stripped = line.lstrip()
    if not stripped:
        return Mark.BLANK
    if stripped.startswith(">= "):
        return Mark.TEXT  # an operator at the start of a wrapped line, not a quote
    if stripped.startswith(">") or _supercite_prefix(stripped):
        return Mark.QUOTED
    return Mark.TEXT


def with_quote_tails_marked(lines: list[str]) -> list[str]:
    """``lines`` with the tails of wrapped quote lines marked as quoted: a client that
    wraps after quoting leaves the end of a long "> " line on a line of its own ("> the
    problem with the new" then "inode"), which is not the writer's text. A tail is short,
    starts in lower case or with "(", and stands between the long quoted line it ends and
    a quoted or blank line."""
    marked = list(lines)
    for index in range(1, len(lines) - 1):
        text = lines[index].strip()
        above = lines[index - 1]
        if (
            0 < len(text) <= _MAX_QUOTE_TAIL_CHARS
            and (text[0].islower() or text[0] == "(")
            and len(above.rstrip()) >= _MIN_WRAPPED_QUOTE_CHARS
            and mark(above) is Mark.QUOTED
            and mark(lines[index + 1]) is not Mark.TEXT
        ):
            marked[index] = "> " + lines[index]
    return marked


def _supercite_prefix(stripped: str) -> bool:
    """Emacs supercite's quote prefix: the quoted author's initials, then ">" (" LK> "),
    or their first name and "> " ("Herbert> ", as Gnus cites)."""
    initials, marker, _ = stripped[: _MAX_SUPERCITE_INITIALS + 1].partition(">")
    if marker and initials.isalpha() and initials.isupper():
        return True
    name, marker, rest = stripped[: _MAX_SUPERCITE_NAME + 2].partition(">")
    return bool(marker) and name.isalpha() and name.istitle() and rest[:1] in ("", " ", "\t")


def attribution_end(lines: list[str], start: int) -> int | None:
    """The index after the attribution that begins at ``start``, or None.

    The shortest candidate of one to three lines is tried first; a longer one that also
    matches without its first line leaves that first line to the text above ("Bye.",
    then a wrapped "On ... <a@b>\\nwrote:")."""
    joined = ""
    for end in range(start, min(start + MAX_ATTRIBUTION_LINES, len(lines))):
        line = lines[end].strip(_BIDI_AND_SPACE)
        if not line or len(joined) + len(line) > MAX_ATTRIBUTION_CHARS:
            return None
        joined = f"{joined} {line}" if joined else line
        if not line.endswith((":", "：")):
            if end == start and quoted_after(lines, end + 1):
                if _dated_address(joined):
                    return end + 1  # old Gmail: "2009/5/12 John Doe <john@doe.example>"
                if header_label(line) == "from":
                    return end + 1  # "From: Pete <pete@x.example>" alone over the quote
            continue
        next_quoted = quoted_after(lines, end + 1)
        if is_attribution(joined, next_quoted):
            if end > start and _starts_later(lines, start, end, next_quoted):
                return None  # the match starts on the next line
            return end + 1
    return None


def quoted_after(lines: list[str], end: int) -> bool:
    """Whether the first non-blank line at or after ``end`` (within two) is quoted."""
    for index in range(end, min(end + 3, len(lines))):
        kind = mark(lines[index])
        if kind is not Mark.BLANK:
            return kind is Mark.QUOTED
    return False


def _starts_later(lines: list[str], start: int, end: int, next_quoted: bool) -> bool:
    """Whether the attribution ending at ``end`` is whole without the line ``start``: it
    has a date of its own, or it is a bare "Ana wrote:" under a sentence."""
    rest = _join(lines, start + 1, end)
    if _DATE.search(rest) and is_attribution(rest, next_quoted=False):
        return True  # not an address alone: a wrapped attribution's tail often holds one
    return lines[start].rstrip().endswith((".", "!", "?")) and is_attribution(rest, next_quoted)


def _join(lines: list[str], first: int, last: int) -> str:
    return " ".join(lines[index].strip(_BIDI_AND_SPACE) for index in range(first, last + 1))


def is_attribution(text: str, next_quoted: bool) -> bool:
    """An "On <date>, <name> wrote:" line in any of our languages (``text`` ends with a
    colon). A verb with a date or an address; a bare "Ana wrote:" only above "> " lines;
    a date and an address before the colon with no verb (Gmail's "2014-03-20 8:48
    GMT+01:00 Ana <ana@example.com>:", the Japanese form)."""
    if text.startswith("* ") and next_quoted:
        text = text[2:]  # "* Ana <ana@example.org> wrote:", as some write it over a quote
    if len(text) > MAX_ATTRIBUTION_CHARS or text.startswith((">", "-", "*", "•")):
        return False
    lower = text.lower()
    has_date = _DATE.search(lower) is not None
    has_address = "@" in lower or _SPELLED_ADDRESS.search(lower) is not None
    if any(verb in lower for verb in ATTRIBUTION_VERBS):
        return has_date or has_address or next_quoted
    if has_date and has_address and next_quoted:
        return True  # a client's own words ("Twas brillig at 15:33 when ana at x.org ...:")
    body = lower.rstrip(":： " + _BIDI_AND_SPACE)
    return has_date and has_address and body.endswith((">", ")", "]")) and body[:1].isdigit()


def _dated_address(text: str) -> bool:
    """A date, a name and an address in brackets with no verb nor colon (old Gmail)."""
    return text[:1].isdigit() and text.endswith(">") and "@" in text and bool(_DATE.search(text))


def header_label(line: str) -> str | None:
    """The kind, "from" or "other", of a line that starts with a header label ("*Von:* Ana")."""
    text = line.strip().lstrip("*").lstrip()
    colon = _first_colon(text)
    if colon is None:
        return None
    label = text[:colon].rstrip("* ").lower()
    if label in FROM_LABELS:
        return "from"
    if label in OTHER_LABELS:
        return "other"
    return None


def _first_colon(text: str) -> int | None:
    head = text[: _MAX_LABEL_CHARS + 1]
    positions = [index for index in (head.find(":"), head.find("：")) if index > 0]
    return min(positions) if positions else None


def header_block_at(lines: list[str], start: int) -> bool:
    """Whether an Outlook-style header block starts here: a "From:" label (or the first
    of several labels) with another label within the next few lines."""
    first = header_label(lines[start])
    if first is None:
        return False
    seen_from = first == "from"
    labels = 1
    for index in range(start + 1, min(start + _HEADER_BLOCK_WINDOW + 1, len(lines))):
        label = header_label(lines[index])
        if label is None:
            continue
        labels += 1
        seen_from = seen_from or label == "from"
        if seen_from and labels >= 2:
            return True
    return False


def header_block_quote(lines: list[str], start: int) -> int | None:
    """Where the "> " quote under a header block that starts at ``start`` begins, if one
    follows it at once: "From: Ana <a@b>\nDate: ...\n\n> ..." is how some write their
    attribution, where Outlook's block has the original unquoted under it."""
    index = start
    end = min(start + _HEADER_BLOCK_WINDOW + 1, len(lines))
    while index < end and header_label(lines[index]) is not None:
        index += 1
    while index < len(lines) and mark(lines[index]) is Mark.BLANK and index < end + 2:
        index += 1
    if index < len(lines) and mark(lines[index]) is Mark.QUOTED:
        return index
    return None


def separator_kind(line: str) -> str | None:
    """The kind, "forward", "reply" or None, of a separator or lead-in line: "---------- Forwarded
    message ---------", "Begin forwarded message:", "-----Original Message-----"."""
    text = line.strip()
    if len(text) > _SEPARATOR_MAX_CHARS or len(text) < 5:
        return None
    lower = text.lower()
    dashed = text[0] in "-_=" and text[:3] == text[0] * 3
    if dashed or lower.endswith((":", "：")) or text.startswith("[") or text.endswith("-"):
        if dashed and any(word in lower for word in SCRUBBED_PART_WORDS):
            return "reply"
        if any(word in lower for word in FORWARD_WORDS):
            return "forward"
        if any(word in lower for word in ORIGINAL_MESSAGE_WORDS):
            # Thunderbird forwards as "-------- Original Message --------"; Outlook's
            # reply quote is "-----Original Message-----".
            return "forward" if lower.startswith("-" * 8) else "reply"
    return None


def is_rule(line: str) -> bool:
    """A line of underscores or dashes only (Outlook puts one above its header block)."""
    text = line.strip()
    return len(text) >= 5 and text.strip("_-=") == ""
