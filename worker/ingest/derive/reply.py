"""Reply text: the new text of an email without its quoted history, attribution lines and
signatures; and, for a forward, the forwarded message apart from the note above it.

One pass over the lines of the text body (``reply_lines`` says what each line is):

- "> " lines are quoted; text between and after quote runs is new (bottom-posting and
  inline answers), each run of new text kept as a block, blocks joined by a blank line;
- an attribution ("On ... wrote:", "Am ... schrieb ...:", "2014-03-20 8:48 GMT+01:00 Ana
  <a@b>:", wrapped over up to three lines, about 30 languages) is dropped; above "> "
  lines the text after the quote is still read, otherwise the rest is the quote (clients
  that quote without "> ");
- an Outlook header block ("From:/Sent:/To:", "Von:/Gesendet:/An:", "От:/Отправлено:",
  ...) or a "-----Original Message-----" line ends the new text: Outlook quotes below it;
- a forward separator ("---------- Forwarded message ---------", "Begin forwarded
  message:", "Weitergeleitete Nachricht", Thunderbird's "-------- Original Message
  --------"), or a header block in an email whose subject says "Fwd:", ends the note:
  what follows is ``forwarded_text``;
- each block loses its signature (``signature``: "-- ", "Sent from my iPhone", a closing
  with a name under it) and a sign-off with the sender's own name (``signed_name``:
  "-Carl", "Cheers,\nAlex"), keeping a postscript under it.

Written here rather than taken from a library, by measurement on our table of replies
(tests/worker/test_reply_text.py, 30-odd clients and languages): mail-parser-reply
(``Reply.content``) got 45% of public replies exactly right here, keeps signatures,
misses Gmail's numeric dates and most languages, and loses bottom-posted text; talon's
algorithm (whose ideas this follows, see ``reply_lines``) comes in a 2017 release whose
signature module fails to import with current scikit-learn (shared/LIBRARIES.md).
HTML-only email is cut with quotequail (blockquotes, ``gmail_quote``) and rendered by
inscriptis, then read by the same pass (Outlook's ``divRplyFwdMsg`` header block is
text by then). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import quotequail
from inscriptis import get_text

from worker.ingest.derive.list_footer import without_list_footer
from worker.ingest.derive.reply_lines import (
    Mark,
    attribution_end,
    header_block_at,
    header_block_quote,
    is_rule,
    mark,
    quoted_after,
    separator_kind,
    with_quote_tails_marked,
)
from worker.ingest.derive.reply_words import FORWARD_SUBJECTS, REPLY_SUBJECTS
from worker.ingest.derive.signature import signature_start
from worker.ingest.derive.signed_name import sender_names, signed_name_span
from worker.interrupts import INTERRUPTS

# Past this size the "new text" is not what an agent reads anyway, and the cost of the
# pass must stay bounded (the bench budget is per email).
_MAX_REPLY_INPUT_CHARS: Final = 100_000
# Markup is most of an HTML body; quotequail and inscriptis read this much of it.
_MAX_HTML_INPUT_CHARS: Final = 3 * _MAX_REPLY_INPUT_CHARS
# Marks a writer leaves where they cut part of a quote.
_ELISIONS: Final = frozenset(
    ("...", "…", "[...]", "[…]", "<...>", "(...)", "[snip]", "<snip>", "[snipped]", "snip")
)


@dataclass(frozen=True, slots=True)
class ReplyParts:
    reply_text: str | None
    forwarded_text: str | None = None


def reply_text(text_body: str | None, html_body: str | None) -> str | None:
    """The new text of a reply; the whole text when nothing is quoted; None with no body."""
    return reply_parts(text_body, html_body).reply_text


def reply_parts(
    text_body: str | None,
    html_body: str | None,
    subject: str | None = None,
    sender_name: str | None = None,
    sender_address: str | None = None,
) -> ReplyParts:
    """The new text and, for a forward, the forwarded message (text body first);
    ``sender_name`` and ``sender_address`` are From's, whose words a sign-off may be."""
    forward = subject is not None and _forward_subject(subject)
    names = sender_names(sender_name, sender_address)
    try:
        if text_body and text_body.strip():
            return split_text(text_body, forward_subject=forward, names=names)
        if html_body and html_body.strip():
            return _split_html(html_body, forward_subject=forward, names=names)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception:
        # A bug on odd input: no reply text, the email itself is fine.
        return ReplyParts(None)
    return ReplyParts(None)


def split_text(
    text: str, *, forward_subject: bool = False, names: frozenset[str] = frozenset()
) -> ReplyParts:
    """The new text of a text body and, after a forward separator, the forwarded text."""
    reply, forwarded = _split_lines(text, forward_subject=forward_subject, names=names)
    return ReplyParts(reply, _forwarded_text(forwarded))


def _split_lines(
    text: str, *, forward_subject: bool, names: frozenset[str]
) -> tuple[str, list[str] | None]:
    """The new text, and the lines after a forward separator (None: not a forward)."""
    lines = with_quote_tails_marked(
        without_list_footer(
            text[:_MAX_REPLY_INPUT_CHARS].replace("\r\n", "\n").replace("\r", "\n").split("\n")
        )
    )
    blocks: list[list[str]] = [[]]
    forwarded: list[str] | None = None
    after_quote = False
    cut = False  # the loop stopped at a header block, a separator or an attribution
    index = 0
    while index < len(lines):
        line = lines[index]
        kind = mark(line)
        if kind is Mark.QUOTED:
            after_quote = True
            index += 1
            continue
        if kind is Mark.BLANK:
            blocks[-1].append("")
            index += 1
            continue
        if after_quote:
            blocks.append([])  # new text after a quote: a block of its own
            after_quote = False
        separator = separator_kind(line)
        if separator == "forward":
            forwarded, resume = _forward_at(lines, index)
            if resume is None:
                cut = True
                break
            after_quote, index = True, resume
            continue
        header_block = separator is None and header_block_at(lines, index)
        if header_block:
            quote = header_block_quote(lines, index)
            if quote is not None:
                index = quote  # "From: Ana\nDate: ..." over "> " lines: an attribution
                continue
        if separator == "reply" or header_block:
            if header_block and forward_subject and not _has_quote(blocks):
                forwarded = lines[index:]
            cut = True
            break
        end = attribution_end(lines, index)
        if end is not None:
            if not quoted_after(lines, end):
                cut = True
                break  # quoted without "> " marks: the rest is the quote
            index = end
            continue
        blocks[-1].append(line.rstrip())
        index += 1
    kept = _without_signed_name(_kept_blocks(blocks, cut_after=cut), names)
    return "\n\n".join("\n".join(block) for block in kept), forwarded


def _kept_blocks(blocks: list[list[str]], *, cut_after: bool) -> list[list[str]]:
    """The blocks of new text, trimmed, without their signatures, empty ones dropped.
    ``cut_after``: the pass stopped at what it cut under the last block."""
    kept: list[list[str]] = []
    for number, block in enumerate(blocks):
        # Only a cut makes a last rule ("_____") the top of what was cut: a text that ends
        # with a rule of its own keeps it.
        trimmed = _trim(block, rule_last=cut_after and number == len(blocks) - 1)
        # A block under new text may be a signature as a whole (after a bottom-posted quote).
        without = _without_signature(trimmed, text_above=bool(kept))
        if without and not _only_elisions(without):
            kept.append(without)
    return kept


def _forward_subject(subject: str) -> bool:
    """Whether a header block under the new text is a forward: the subject says so, or
    does not mark a reply (list tags such as "[numpy] " are read past)."""
    text = subject.strip().lower()
    while text.startswith("[") and "]" in text:
        text = text[text.index("]") + 1 :].lstrip()
    return text.startswith(FORWARD_SUBJECTS) or not text.startswith(REPLY_SUBJECTS)


def _forward_at(lines: list[str], index: int) -> tuple[list[str], int | None]:
    """The forwarded lines under the separator at ``index``, and where new text may
    resume (None: all the rest is the forward). Apple Mail and Sparrow quote the
    forwarded message with "> ": it ends where the quote does, and what the sender wrote
    under it is new text."""
    quoted_end = _quoted_run_end(lines, index + 1)
    if quoted_end is None:
        return lines[index + 1 :], None
    return [_unquoted(line) for line in lines[index + 1 : quoted_end]], quoted_end


def _quoted_run_end(lines: list[str], start: int) -> int | None:
    """The index after the "> " lines (and blank lines among them) that start at
    ``start`` past blank lines; None when the first line there is not quoted."""
    index = start
    while index < len(lines) and mark(lines[index]) is Mark.BLANK:
        index += 1
    if index == len(lines) or mark(lines[index]) is not Mark.QUOTED:
        return None
    while index < len(lines) and mark(lines[index]) is not Mark.TEXT:
        index += 1
    return index


def _unquoted(line: str) -> str:
    """A forwarded line without its one level of "> "."""
    text = line.lstrip()
    if text.startswith("> "):
        return text[2:]
    return text[1:] if text.startswith(">") else text


def _only_elisions(block: list[str]) -> bool:
    """A block that only marks where quoted text was cut ("...", "[snip]") between two
    quotes: the writer's mark on the quote, not new text."""
    return all(line.strip().lower() in _ELISIONS for line in block if line.strip())


def _has_quote(blocks: list[list[str]]) -> bool:
    return len(blocks) > 1


def _trim(block: list[str], *, rule_last: bool = False) -> list[str]:
    """The block without blank lines at its ends, nor (``rule_last``) an Outlook rule
    ("_____") last."""
    start, end = 0, len(block)
    while end > start and (not block[end - 1].strip() or (rule_last and is_rule(block[end - 1]))):
        end -= 1
    while start < end and not block[start].strip():
        start += 1
    return block[start:end]


def _without_signature(block: list[str], *, text_above: bool) -> list[str]:
    cut = signature_start(block, text_above=text_above)
    return _trim(block[:cut]) if cut is not None else block


def _without_signed_name(blocks: list[list[str]], names: frozenset[str]) -> list[list[str]]:
    """The blocks without a sign-off with the sender's name at the end of the last one
    (which may be the whole of it, under the quote the blocks above answer)."""
    if not blocks:
        return blocks
    signed = signed_name_span(blocks[-1], names, text_above=len(blocks) > 1)
    if signed is None:
        return blocks
    start, end = signed
    last = _trim([*blocks[-1][:start], *blocks[-1][end:]])
    return [*blocks[:-1], last] if last else blocks[:-1]


def _forwarded_text(lines: list[str] | None) -> str | None:
    if lines is None:
        return None
    text = "\n".join(line.rstrip() for line in lines).strip()
    return text or None


def _split_html(html: str, *, forward_subject: bool, names: frozenset[str]) -> ReplyParts:
    """The unquoted part of an HTML body read as text (quotequail cuts blockquotes and
    Gmail/Apple quote blocks; inscriptis renders with the layout a reader sees)."""
    html = html[:_MAX_HTML_INPUT_CHARS]
    try:
        chunks = quotequail.quote_html(html)
    except INTERRUPTS:
        raise
    except Exception:
        chunks = [(True, html)]
    shown = "".join(chunk for keep, chunk in chunks if keep)
    reply, forwarded = _split_lines(_render(shown), forward_subject=forward_subject, names=names)
    if forwarded is None:
        return ReplyParts(reply)
    # A forward: quotequail took the forwarded message for a quote; it is the rest (only
    # rendered then: a reply's quote is not read).
    quoted = _render("".join(chunk for keep, chunk in chunks if not keep))
    return ReplyParts(reply, _forwarded_text([*forwarded, "", *quoted.split("\n")]))


def _render(html: str) -> str:
    """The text of ``html``, lines without the indentation inscriptis gives nested
    blocks (a forward's split quote block would indent its header lines), blank runs
    made one."""
    if not html.strip():
        return ""
    lines: list[str] = []
    for raw in str(get_text(html)).split("\n"):
        line = raw.strip()
        if line or (lines and lines[-1]):
            lines.append(line)  # blank runs (block margins) become one blank line
    return "\n".join(lines)
