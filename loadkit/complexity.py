"""Adversarial email families, and the worker's parse and derive path they are timed on.

Every family is an email whose cost a quadratic (or worse) step would blow up: runs of
newlines, attribution-like "On a a a ..." lines, long lines, deep ``>`` quoting, HTML
nesting, sender-declared hostile charsets in body parts and headers, many encoded words.
Each is built at a size, then run through what the ingest task runs on it
(:func:`run_path`: ``parsing.parse_inbound``, then ``derive.email_columns`` and
``derive.attachment_columns``), timed in CPU seconds (:func:`cpu_seconds`, best of a few
runs, so other processes on the machine do not count).

``tests/worker/test_complexity.py`` asserts that each family's time grows linearly (the
ratio of the times at 8x and 1x a size: about 8 for linear growth, 64 for quadratic);
the bench's ``complexity`` stage (``python -m bench.run --only complexity``) prints the
seconds per MB of each at 1 MiB, and its ``fuzz`` stage searches for new families.
"""

from __future__ import annotations

import base64
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, Final

from worker.ingest import derive, parsing

MIB: Final = 1024 * 1024
# The worker's caps, far above these emails, so that each is parsed and derived in full.
_LIMITS: Final = parsing.DEFAULT_LIMITS


# Header families stay this far under their size, so that at 1 MiB they are under the
# worker's cap on header bytes (1 MiB) and are parsed rather than refused.
_HEADER_SLACK: Final = 1024


def _head(extra: str = "", subject: str = "adversarial") -> str:
    return (
        "From: Sender <sender@example.org>\r\n"
        "To: inbox@example.com\r\n"
        f"Subject: {subject}\r\n"
        "Message-ID: <complexity@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        f"{extra}"
    )


def _fill(unit: str, size: int) -> str:
    """``unit`` repeated to about ``size`` characters."""
    return unit * max(size // len(unit), 1)


def plain(body: str, extra: str = "") -> str:
    return _head(extra) + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body


def html(body: str) -> str:
    return _head() + "Content-Type: text/html; charset=utf-8\r\n\r\n" + body


def _base64_part(data: bytes, charset: str) -> str:
    encoded = base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")
    return (
        _head()
        + f"Content-Type: text/plain; charset={charset}\r\n"
        + "Content-Transfer-Encoding: base64\r\n\r\n"
        + encoded
    )


def _punycode_body(size: int) -> str:
    # After the last "-", every "a" is a complete delta of 0: one insertion each, into
    # a string as long as the text decoded so far.
    return _base64_part(b"x-" + b"a" * (size * 3 // 4), "punycode")


def _punycode_subject(size: int) -> str:
    # One long encoded word in the Subject, many short ones in another header.
    half = (size - _HEADER_SLACK) // 2
    words = _fill("=?punycode?q?x-" + "a" * 60 + "?= ", half)
    one = "=?punycode?q?x-" + "a" * half + "?="
    return _head(subject=one) + f"X-Words: {words}\r\nContent-Type: text/plain\r\n\r\nhello\r\n"


def _punycode_filename(size: int) -> str:
    # RFC 2231 parameters carry a charset too.
    return (
        _head()
        + 'Content-Type: multipart/mixed; boundary="P"\r\n\r\n'
        + "--P\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        + "--P\r\nContent-Type: application/octet-stream\r\n"
        + "Content-Disposition: attachment; filename*=punycode''x-"
        + "a" * (size - _HEADER_SLACK)
        + "\r\n\r\nAAAA\r\n--P--\r\n"
    )


def _many_encoded_words(size: int) -> str:
    words = _fill("=?utf-8?q?caf=C3=A9?= ", size - _HEADER_SLACK)
    return _head(subject=words) + "Content-Type: text/plain\r\n\r\nhello\r\n"


def _with_headers(headers: str) -> str:
    return _head() + headers + "Content-Type: text/plain\r\n\r\nhello\r\n"


def _content_type_params(size: int) -> str:
    params = _fill("a=b;\r\n ", size - _HEADER_SLACK)
    return _head() + f"Content-Type: text/plain; {params}charset=utf-8\r\n\r\nhello\r\n"


def _many_part_params(size: int) -> str:
    # Parts whose Content-Type is 4 KB of parameters: each part's accessors parse it again.
    params = _fill("a=b; ", 4000)
    part = f"--P\r\nContent-Type: application/x-data; {params}\r\n\r\nAAAA\r\n"
    return (
        _head()
        + 'Content-Type: multipart/mixed; boundary="P"\r\n\r\n'
        + _fill(part, size - _HEADER_SLACK)
        + "--P--\r\n"
    )


def _dsn_report(size: int) -> str:
    # A delivery-status part: the stdlib parses each block as a header section, and
    # flufl.bounce reads every block.
    block = (
        "Final-Recipient: rfc822; a@b.example\r\nAction: failed\r\nStatus: 5.0.0\r\n"
        f"Diagnostic-Code: smtp; {'d ' * 700}\r\n\r\n"
    )
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@example.org\r\nTo: inbox@example.com\r\n"
        "Subject: failure\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        "--R\r\nContent-Type: text/plain\r\n\r\nundeliverable\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n" + _fill(block, size) + "--R--\r\n"
    )


def _attachment_name(size: int) -> str:
    return (
        _head()
        + 'Content-Type: multipart/mixed; boundary="P"\r\n\r\n'
        + "--P\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        + "--P\r\nContent-Type: application/octet-stream\r\n"
        + f'Content-Disposition: attachment; filename="{_fill(". ", size - _HEADER_SLACK)}x"'
        + "\r\n\r\nAAAA\r\n--P--\r\n"
    )


def _both_parts(size: int) -> str:
    """A text part and an HTML part of different words, for the parts' comparison."""
    words = " ".join(f"word{i:x}" for i in range(size // 16))
    other = " ".join(f"other{i:x}" for i in range(size // 16))
    return (
        _head()
        + 'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        + f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{words}\r\n"
        + f"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>{other}</p>\r\n--b--\r\n"
    )


def _bounce(body: str) -> str:
    # A null sender and MAILER-DAEMON: derive hands the raw message to flufl.bounce.
    return (
        "Return-Path: <>\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@example.org>\r\n"
        "To: inbox@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain\r\n\r\n" + body
    )


_QMAIL_INTRO: Final = (
    "Hi. This is the qmail-send program at mx.example.org.\n"
    "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
    "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
)


# Each family: size in bytes -> raw_msg of about that many bytes.
FAMILIES: Final[dict[str, Callable[[int], str]]] = {
    "newline_run": lambda n: plain("hello\r\n" + "\r\n" * (n // 2) + "-\r\n"),
    "newline_dash": lambda n: plain(_fill("\n-", n)),
    "dash_newline_run": lambda n: plain("-" * (n // 2) + "\n" * (n // 2) + "-"),
    "whitespace_newline": lambda n: plain("x\n" + _fill(" \t\r\n", n) + "x\n"),
    "on_attribution_line": lambda n: plain("On " + _fill("a ", n)),
    # Lines just under the length a reply header is looked for in (worker.ingest.derive).
    "on_attribution_lines": lambda n: plain(_fill("On " + "a " * 77 + "\n", n)),
    "skrev_lines": lambda n: plain(_fill("Den " + "skrev " * 25 + "\n", n)),
    "schrieb_lines": lambda n: plain(_fill("Am " + "Am schrieb " * 14 + "\n", n)),
    "on_wrapped_lines": lambda n: plain(_fill("On " + "a " * 77 + "\n" + "a " * 78 + "\n", n)),
    "skrev_line": lambda n: plain("Den " + _fill("skrev ", n)),
    "schrieb_line": lambda n: plain("Am " + _fill("Am schrieb ", n)),
    "on_on_wrote": lambda n: plain(_fill("On \n", n) + "On a wrote:\n"),
    # Lines that each end like an attribution (worker.ingest.derive.reply_lines tries up
    # to three of them joined), wrapped ones, and ones just over the length tried.
    "wrote_colon_lines": lambda n: plain(_fill("On a " + "wrote " * 25 + ":\n", n)),
    "wrapped_wrote_lines": lambda n: plain(_fill("On a " + "a " * 60 + "\n" + "wrote:\n", n)),
    "long_colon_lines": lambda n: plain(_fill("2026 " + "<a@b> x " * 45 + ":\n", n)),
    # Every new block after a quote gets a signature search; closings and labels repeat.
    "quote_signoff_blocks": lambda n: plain(_fill("> q\nnew\n\nBest regards,\nBob\n--\n", n)),
    "label_blocks": lambda n: plain(_fill("From: a\n\n\n\n\n\n\nSent: b\n", n)),
    "separator_lines": lambda n: plain(_fill("----- Original words -----\n", n)),
    "long_line": lambda n: plain(_fill("x", n)),
    "long_words_line": lambda n: plain(_fill("word ", n)),
    "header_like_lines": lambda n: plain(_fill("From: a\nTo: b\n", n)),
    "quote_nesting": lambda n: plain(_fill("> ", n) + "On a wrote:\n"),
    "quote_lines": lambda n: plain(_fill("> " * 30 + "x\n", n)),
    # Found by the bench's fuzz stage: Outlook-style "*From:*" labels start with "[* ]*".
    "star_lines": lambda n: plain(_fill("*" * 13 + "\n", n)),
    "underscore_lines": lambda n: plain(_fill("x\n\n" + "_" * 40 + "\n", n)),
    "html_deep_nesting": lambda n: html(_fill("<div>", n // 2) + "x" + _fill("</div>", n // 2)),
    "html_unclosed_tags": lambda n: html(_fill("<p><b><i>", n)),
    "html_blockquotes": lambda n: html(
        _fill("<blockquote>", n // 2) + "x" + _fill("</blockquote>", n // 2)
    ),
    "html_table_nesting": lambda n: html(_fill("<table><tr><td>", n)),
    # The costliest shape the bench's fuzz stage found (per byte, at 8 KB).
    "html_links_entities": lambda n: html(_fill("<a href=x>", n // 2) + _fill("<p>&amp;", n // 2)),
    "punycode_body": _punycode_body,
    "utf7_body": lambda n: _base64_part(_fill("+AGE-", n * 3 // 4).encode(), "utf-7"),
    "punycode_headers": _punycode_subject,
    "punycode_filename": _punycode_filename,
    "many_encoded_words": _many_encoded_words,
    "long_address_list": lambda n: _with_headers(
        "Cc: " + _fill("a@b.example,\r\n ", n - _HEADER_SLACK) + "c@d\r\n"
    ),
    "many_address_headers": lambda n: _with_headers(
        _fill("To: " + "a@b.example, " * 70 + "c@d.example\r\n", n - _HEADER_SLACK)
    ),
    "long_folded_header": lambda n: _with_headers(
        "X-Long: " + _fill("word\r\n ", n - _HEADER_SLACK) + "end\r\n"
    ),
    "content_type_params": _content_type_params,
    "attachment_name": _attachment_name,
    "many_part_params": _many_part_params,
    "dsn_report": _dsn_report,
    "bounce_newlines": lambda n: _bounce(_fill("\r\n", n)),
    "bounce_long_line": lambda n: _bounce(_fill("a ", n)),
    # A bounce flufl.bounce finds addresses in: every line is then read again for the
    # Message-IDs and senders the failed addresses are checked against.
    "bounce_checked_lines": lambda n: _bounce(
        _QMAIL_INTRO
        + _fill("<a@b.example>:\nSorry (#5.1.1)\n\nFrom: " + "c@d.example " * 8 + "\n", n)
    ),
    # A multipart/report whose Content-Type is mostly parameters before its report-type.
    "report_content_type": lambda n: _with_headers(
        "Content-Type: multipart/report; " + _fill("report-type ", n - _HEADER_SLACK) + "\r\n"
    ),
    # Content hygiene (worker/ingest/derive/hygiene.py): hidden styles nested and never
    # closed (each end tag looks its start up a bounded depth), close colours, invisible
    # characters and joiners between letters, and two parts of many words to compare.
    "hygiene_hidden_styles": lambda n: html(
        _fill('<div style="display:none;color:#fefefe;font-size:0">x', n)
    ),
    "hygiene_unmatched_ends": lambda n: html(_fill("<span>", n // 2) + _fill("</p>", n // 2)),
    "hygiene_invisible_chars": lambda n: plain(_fill("a\u200c\u200db\u202e\u200b ", n)),
    "hygiene_text_and_html": _both_parts,
}


def inbound_event(raw: str) -> dict[str, Any]:
    return {"event": "inbound", "ts": 1700000000, "msg": {"raw_msg": raw, "email": "inbox@x.org"}}


def run_path(event: dict[str, Any]) -> parsing.ParsedEmail:
    """What the ingest task runs on an inbound event before storing it."""
    email = parsing.parse_inbound(event, _LIMITS)
    derive.email_columns(email)
    for attachment in email.attachments:
        derive.attachment_columns(attachment)
    return email


def cpu_seconds(event: dict[str, Any], repeats: int = 3, budget: float = 30.0) -> float:
    """The least CPU time of ``repeats`` runs (fewer when a run is slower than ``budget``)."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.process_time()
        run_path(event)
        elapsed = time.process_time() - started
        best = min(best, elapsed)
        if elapsed > budget:
            break
    return best


def peak_bytes(event: dict[str, Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        run_path(event)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
