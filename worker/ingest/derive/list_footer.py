"""The footer a mailing list appends under every message it sends out, cut off.

Role: the first step of ``worker.ingest.derive.reply`` on a text body. Mailman ends a
message with a rule of underscores over "<list> mailing list" and a ``listinfo`` link,
LISTSERV frames "To unsubscribe from the <list> list ..." between two rules of ``#``.
The sender wrote none of it, so it is neither the reply nor the forwarded message. Only
the last footer is cut: one above it belongs to a forwarded list message, which carried
it when it was forwarded. Only a rule with an unsubscribe or
listinfo line under it, within the last few lines, counts: a rule alone is the writer's.
No I/O.
"""

from __future__ import annotations

from typing import Final

_FOOTER_WORDS: Final = ("unsubscribe", "listinfo", "mailing list", "abbestellen")
_RULE_CHARACTERS: Final = frozenset("#_-=*")
_MIN_RULE_CHARS: Final = 5
# Mailman's footer is four lines, LISTSERV's three; a list may add a line or two.
_MAX_FOOTER_LINES: Final = 8


def without_list_footer(lines: list[str]) -> list[str]:
    """``lines`` without the footer of the list that sent them, if one ends them."""
    start = _footer_start(lines, len(lines))
    return lines if start is None else lines[:start]


def _footer_start(lines: list[str], end: int) -> int | None:
    """The rule that opens a footer ending at ``end``, or None."""
    seen_words = False
    counted = 0
    for index in range(end - 1, -1, -1):
        text = lines[index].strip()
        if not text:
            continue
        counted += 1
        if counted > _MAX_FOOTER_LINES:
            return None
        if _is_rule(text):
            if seen_words:
                return index
        elif any(word in text.lower() for word in _FOOTER_WORDS):
            seen_words = True
    return None


def _is_rule(text: str) -> bool:
    return len(text) >= _MIN_RULE_CHARS and set(text) <= _RULE_CHARACTERS
