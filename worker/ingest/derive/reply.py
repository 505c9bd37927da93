"""Reply text: the new text of an email without its quoted history, "On ... wrote:" headers
and signatures (mail-parser-reply, multi-language; quotequail cuts HTML quotes and
inscriptis turns what is left into text when the email has only HTML). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final

import quotequail
from inscriptis import get_text
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

from worker.ingest.line_pattern import LineStartPattern
from worker.interrupts import INTERRUPTS

# Reply parsing runs regular expressions over the body; past this size the "new text" is not
# what an agent reads anyway, and the cost must stay bounded (the bench budget is per email).
_MAX_REPLY_INPUT_CHARS: Final = 100_000
# Markup is most of an HTML body; quotequail and inscriptis read this much of it.
_MAX_HTML_INPUT_CHARS: Final = 3 * _MAX_REPLY_INPUT_CHARS
# A reply header ("On ... wrote:", an Outlook "From:/Sent:" block) is a few short lines:
# longer lines are not tried, and a try sees a bounded window (worker/line_pattern.py),
# since some of the header expressions are quadratic or cubic in a line's length.
_MAX_HEADER_LINE_CHARS: Final = 160
_MAX_HEADER_LINES: Final = 24
# "david" in the library's table is a test persona, not a language.
_LANGUAGES: Final = [code for code in MAIL_LANGUAGES if code != "david"]


def reply_text(text_body: str | None, html_body: str | None) -> str | None:
    """The new text of a reply; the whole text when nothing is quoted; None with no body."""
    if text_body and text_body.strip():
        return _latest_reply(text_body)
    if html_body and html_body.strip():
        return _latest_reply(_html_reply_text(html_body))
    return None


def _latest_reply(text: str) -> str | None:
    try:
        # What EmailReplyParser(languages=...).parse_reply(text) does, with the header
        # expression tried at line starts only (worker/line_pattern.py): same result.
        expressions = _reply_expressions()
        message = EmailMessage(
            text=text[:_MAX_REPLY_INPUT_CHARS],
            languages=list(_LANGUAGES),
            _header_regex=expressions.header,  # duck-typed: findall and pattern
            _disclaimers_regex=_NOT_NEEDED,
            _signature_regex=_NOT_NEEDED,
        )
        found = message.read().latest_reply
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception:
        # A regex or library bug on odd input: no reply text, the email itself is fine.
        return None
    return found.strip() if isinstance(found, str) else ""


class _NotNeeded:
    """The signature and disclaimer expressions, not run: ``latest_reply`` is the first
    reply's ``content``, which they do not change (the library uses what they find for
    ``EmailReply.body``, which nothing here reads), and they are quadratic on runs of
    blank lines (``\\s*^`` tries every start of a run, then the whole run)."""

    pattern = ""

    def findall(self, text: str) -> list[str]:
        return []

    def search(self, text: str) -> None:
        return None


_NOT_NEEDED: Final = _NotNeeded()


@dataclass(frozen=True)
class _ReplyExpressions:
    header: LineStartPattern


@cache
def _reply_expressions() -> _ReplyExpressions:
    """The library's header expression for our languages, built once per process: it
    builds it per message, and with it formats the whole pattern for a debug line
    (~0.06 ms of CPU an email here)."""
    prototype = EmailMessage(text="", languages=list(_LANGUAGES))
    return _ReplyExpressions(
        header=LineStartPattern(
            prototype.HEADER_REGEX,
            max_line_chars=_MAX_HEADER_LINE_CHARS,
            max_lines=_MAX_HEADER_LINES,
        ),
    )


def _html_reply_text(html: str) -> str:
    """The text of the unquoted part of an HTML body (blockquotes, Gmail/Apple quote blocks
    are cut by quotequail; inscriptis renders the rest with the layout a reader sees)."""
    html = html[:_MAX_HTML_INPUT_CHARS]
    try:
        shown = "".join(chunk for keep, chunk in quotequail.quote_html(html) if keep)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception:
        shown = html
    try:
        return str(get_text(shown))
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception:
        return ""
