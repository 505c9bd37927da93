"""A compiled pattern whose ``findall`` only tries where a match can begin: line starts.

Role: mail-parser-reply finds the "On ... wrote:" / "From: ... Sent: ..." headers of quoted
replies with one regular expression of 27 alternatives (13 languages), case-insensitive.
Python's ``re`` tries every alternative at every character of the body, so that one
``findall`` cost 1.8 ms of CPU on a 1,500-character body, more than parsing the whole
MIME message. Every alternative begins at a line start (``^`` with MULTILINE) or at the
newline before one (``(?:^|\\n|\\n(?:> ?)*)``), so trying only those positions finds the
same matches, in the same order, with the same groups.

Written here because the library takes any object with ``findall`` and ``pattern`` for
its header expression and has no option for this; ``tests/worker/test_line_pattern.py``
checks it against ``re``'s own ``findall`` on the reply corpus and on generated bodies.

Bounded (``max_line_chars``, ``max_lines``): several alternatives are quadratic or cubic in
the length of the line they start on (``On\\s(?:.+?\\s?.+?)\\s?wrote:`` tries every way to
split a line in two; ``[^\\n]*skrev\\s(?:.+?\\s?.+?):`` does so after every "skrev"), so a
body of long "On a a a ..." lines costs seconds per kilobyte. A bounded pattern tries a
line start only when its line is at most ``max_line_chars`` long, and matches within a
window of at most ``max_lines`` lines that stops before the next longer line (``endpos``
at a line end, where ``$`` matches as it would in the whole text). A header is a short
line or a few: what no longer matches is a "header" longer than that, and a header block
longer than ``max_lines`` is found as several. Each try then costs at most a constant,
and the scan is linear in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class LineStartPattern:
    """``findall`` of ``compiled`` (MULTILINE), tried at 0, at each newline and after it."""

    def __init__(
        self,
        compiled: re.Pattern[str],
        *,
        max_line_chars: int | None = None,
        max_lines: int | None = None,
    ) -> None:
        if not compiled.flags & re.MULTILINE:
            raise ValueError("a line-start pattern must be compiled with re.MULTILINE")
        if (max_line_chars is None) != (max_lines is None):
            raise ValueError("max_line_chars and max_lines bound a pattern together")
        self.compiled = compiled
        self.pattern = compiled.pattern
        self.flags = compiled.flags
        self.max_line_chars = max_line_chars
        self.max_lines = max_lines

    def findall(self, text: str) -> list[Any]:
        found: list[Any] = []
        end = 0
        if self.max_line_chars is None or self.max_lines is None:
            starts: Iterator[tuple[int, int]] = ((p, len(text)) for p in _line_starts(text))
        else:
            starts = _Lines(text, self.max_line_chars).windows(self.max_lines)
        for position, endpos in starts:
            if position < end:
                continue  # inside the previous match: findall does not overlap
            match = self.compiled.match(text, position, endpos)
            if match is None:
                continue
            if match.end() == position:
                # An empty match: findall's rules for those are subtler than this scan.
                # The library's alternatives never match empty; if one did, be exact.
                return self.compiled.findall(text)
            found.append(_findall_item(match, self.compiled.groups))
            end = match.end()
        return found


def _line_starts(text: str) -> Iterator[int]:
    """0, then each newline's position and the one after it, in order, each once."""
    yield 0
    last = 0
    newline = text.find("\n")
    while newline != -1:
        if newline > last:
            yield newline
        yield newline + 1
        last = newline + 1
        newline = text.find("\n", last)


@dataclass(slots=True)
class _Lines:
    """The lines of a text, and for each the next line longer than ``max_chars``."""

    text: str
    max_chars: int

    def windows(self, max_lines: int) -> Iterator[tuple[int, int]]:
        """Each position of :func:`_line_starts` whose line is not too long, with the end
        of its window: the end of the last of at most ``max_lines`` lines (counted from
        the line the position is in, or for a newline, from the line after it), stopping
        before a line longer than ``max_chars``."""
        text = self.text
        ends: list[int] = []
        position = -1
        for content in text.split("\n"):
            position += len(content) + 1
            ends.append(position)  # the line's newline; one past the text for the last
        ends[-1] = len(text)
        count = len(ends)
        # next_long[i]: the first line at or after i longer than max_chars (count if none).
        next_long = [count] * (count + 1)
        for line in range(count - 1, -1, -1):
            start = ends[line - 1] + 1 if line else 0
            too_long = ends[line] - start > self.max_chars
            next_long[line] = line if too_long else next_long[line + 1]
        for line in range(count):
            start = ends[line - 1] + 1 if line else 0
            if next_long[line] != line:
                last = min(line + max_lines - 1, next_long[line] - 1)
                yield start, ends[last]
            newline = ends[line]
            if newline < len(text) and newline > start and next_long[line + 1] != line + 1:
                # A match may begin with the newline itself (``(?:^|\n)...``): its window
                # is that of the next line.
                last = min(line + max_lines, next_long[line + 1] - 1, count - 1)
                yield newline, ends[last]


def _findall_item(match: re.Match[str], groups: int) -> Any:
    """What ``re.findall`` lists for a match: the whole match, the group, or all groups."""
    if groups == 0:
        return match.group(0)
    if groups == 1:
        return match.group(1) or ""
    return match.groups("")
