"""Derived fields of a parsed email: what a platform's agent needs to act on it.

Role: from a :class:`~worker.ingest.parsing.ParsedEmail` compute, without any I/O (an import-linter
contract keeps it so), the fields stored next to the email for the hand-off to the platform:

- ``conversation_id``: the thread root (first id of References, else In-Reply-To, else the
  email's own Message-ID), normalised, so every message of a thread shares it;
- ``mailbox_hash``: the plus-address tag of the envelope recipient (``inbox+ticket-42@`` gives
  ``ticket-42``), which platforms use to route replies to the object they are about;
- ``reply_text``: the new text without quoted history, "On ... wrote:" headers and signatures
  (mail-parser-reply, multi-language; quotequail cuts HTML quotes and inscriptis turns what
  is left into text when the email has only HTML);
- ``auto_submitted`` with its reason: RFC 3834 signals and delivery-status reports, with the
  addresses a bounce names (flufl.bounce), so no agent answers an out-of-office or a bounce
  and starts a mail loop;
- per attachment, the type sniffed from its bytes (puremagic) and whether it contradicts the
  declared type (an ``.pdf`` that is an executable).

Every function is total: a library that raises on odd input gives ``None`` (or "not
detected"), never a failed email, since the derived fields are advisory and re-derivable
with ``kave reprocess``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from functools import cache
from typing import Final

import quotequail
from flufl.bounce import all_failures
from inscriptis import get_text
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

from worker.ingest import file_types
from worker.ingest.columns import CONTENT_TYPE_CHARS, INDEXED_TEXT_CHARS
from worker.ingest.line_pattern import LineStartPattern
from worker.ingest.parsing import ParsedAttachment, ParsedEmail
from worker.interrupts import INTERRUPTS

__all__ = [
    "Derived",
    "Sniffed",
    "attachment_columns",
    "auto_submitted",
    "conversation_id",
    "derive_email",
    "email_columns",
    "mailbox_hash",
    "normalize_message_id",
    "reply_text",
    "sniff_attachment",
]

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
# flufl.bounce's detectors run a couple of dozen expressions over every body line. What
# they look for (the report, the failure text) comes first in a bounce; the returned
# message after it (which can be the bulk of the bytes) is not read past this.
_MAX_BOUNCE_BYTES: Final = 64 * 1024
_MAX_REASON_CHARS: Final = 64
_MAX_BOUNCED: Final = 100
# "david" in the library's table is a test persona, not a language.
_LANGUAGES: Final = [code for code in MAIL_LANGUAGES if code != "david"]
_PRECEDENCE_AUTO: Final = frozenset({"bulk", "junk", "list", "auto_reply"})
_SUPPRESS_NONE: Final = frozenset({"", "none"})
_ANGLE_ID: Final = re.compile(r"<([^<>\s]+)>")


@dataclass(frozen=True, slots=True)
class Derived:
    conversation_id: str | None
    mailbox_hash: str | None
    reply_text: str | None
    auto_submitted: bool
    auto_submitted_reason: str | None  # e.g. "auto-submitted:auto-replied", "dsn"
    bounced_addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sniffed:
    sniffed_type: str | None  # None when the bytes match no known signature
    type_mismatch: bool


def derive_email(email: ParsedEmail) -> Derived:
    """All derived fields of an email (attachments: :func:`sniff_attachment`)."""
    flagged, reason, bounced = auto_submitted(email)
    return Derived(
        conversation_id=conversation_id(email.message_id, email.in_reply_to, email.references),
        mailbox_hash=mailbox_hash(email.envelope_recipient),
        reply_text=reply_text(email.text_body, email.html_body),
        auto_submitted=flagged,
        auto_submitted_reason=reason,
        bounced_addresses=bounced,
    )


def email_columns(email: ParsedEmail) -> dict[str, object]:
    """The derived columns of an email row (worker.ingest.storage merges them into its values)."""
    derived = derive_email(email)
    return {
        "conversation_id": derived.conversation_id,
        "mailbox_hash": derived.mailbox_hash,
        "reply_text": derived.reply_text,
        "auto_submitted": derived.auto_submitted,
        "auto_submitted_reason": derived.auto_submitted_reason,
        "bounced_addresses": list(derived.bounced_addresses),
    }


def attachment_columns(attachment: ParsedAttachment) -> dict[str, object]:
    """The derived columns of an attachment row."""
    sniffed = sniff_attachment(attachment)
    return {"sniffed_type": sniffed.sniffed_type, "type_mismatch": sniffed.type_mismatch}


# --------------------------------------------------------------------------- threading


def normalize_message_id(value: str | None) -> str | None:
    """``<Local@Domain>`` -> ``local@domain``-style key: brackets and blanks dropped, the
    domain lower-cased (domains are case-insensitive; local parts formally are not, so they
    are kept as sent)."""
    if value is None:
        return None
    found = _ANGLE_ID.search(value)
    ident = (found.group(1) if found else value).strip().strip("<>").strip()
    if not ident:
        return None
    local, at, domain = ident.rpartition("@")
    ident = f"{local}@{domain.lower()}" if at else ident
    return ident[:INDEXED_TEXT_CHARS]


def conversation_id(
    message_id: str | None, in_reply_to: str | None, references: Iterable[str]
) -> str | None:
    """The thread root: first References id, else In-Reply-To, else the own Message-ID.

    References lists the thread from its root (RFC 5322 3.6.4), so its first id is the same
    for every message of the thread, whoever's client trimmed the middle of the list.
    """
    for candidate in (*references, in_reply_to, message_id):
        normalised = normalize_message_id(candidate)
        if normalised is not None:
            return normalised
    return None


def mailbox_hash(recipient: str | None) -> str | None:
    """The plus-address tag of the envelope recipient: ``inbox+ticket-42@x`` -> ``ticket-42``."""
    if not recipient:
        return None
    local = recipient.strip().rpartition("@")[0] or recipient.strip()
    _, plus, tag = local.partition("+")
    return tag[:INDEXED_TEXT_CHARS] if plus and tag else None


# --------------------------------------------------------------------------- reply text


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


# --------------------------------------------------------------------------- auto-submitted


def _header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    wanted = name.lower()
    return [value.strip() for key, value in headers if key.lower() == wanted]


def auto_submitted(email: ParsedEmail) -> tuple[bool, str | None, tuple[str, ...]]:
    """Whether a machine sent this email, why, and the addresses a bounce reports.

    Signals, first match wins for the reason: a delivery-status report (multipart/report,
    RFC 3464) or a bounce flufl.bounce recognises; ``Auto-Submitted`` other than ``no``
    (RFC 3834); ``Precedence: bulk|junk|list|auto_reply``; ``X-Autoreply``/``X-Autorespond``;
    ``X-Auto-Response-Suppress`` (Exchange sets it on its own automatic replies); an empty
    Return-Path ``<>`` (the null sender of bounces and auto-replies).
    """
    pairs = list(email.headers)
    content_type = " ".join(_header_values(pairs, "Content-Type")).lower()
    return_paths = _header_values(pairs, "Return-Path")
    null_sender = any(value.replace(" ", "") in ("<>", "") for value in return_paths)
    # The From header as worker.ingest.parsing read it (display name and address).
    sender = f"{email.from_name or ''} {email.from_address or ''}".lower()
    is_report = "multipart/report" in content_type
    looks_bounced = is_report or null_sender or "mailer-daemon" in sender or "postmaster" in sender
    bounced = _bounced_addresses(email.raw) if looks_bounced else ()
    if is_report or bounced:
        return True, "dsn", bounced

    reason = _rfc3834_reason(pairs)
    if reason is None and null_sender:
        reason = "return-path:empty"
    return reason is not None, reason, ()


def _rfc3834_reason(pairs: list[tuple[str, str]]) -> str | None:
    for value in _header_values(pairs, "Auto-Submitted"):
        keyword = value.split(";")[0].strip().lower()
        if keyword and keyword != "no":
            return f"auto-submitted:{keyword}"[:_MAX_REASON_CHARS]
    for value in _header_values(pairs, "Precedence"):
        if value.lower() in _PRECEDENCE_AUTO:
            return f"precedence:{value.lower()}"[:_MAX_REASON_CHARS]
    if _header_values(pairs, "X-Autoreply") or _header_values(pairs, "X-Autorespond"):
        return "x-autoreply"
    suppress = _header_values(pairs, "X-Auto-Response-Suppress")
    if any(value.lower() not in _SUPPRESS_NONE for value in suppress):
        return "x-auto-response-suppress"
    return None


def _bounced_addresses(raw: bytes) -> tuple[str, ...]:
    try:
        # flufl.bounce's detectors were written against the compat32 Message API.
        message = message_from_bytes(raw[:_MAX_BOUNCE_BYTES], policy=email_policy.compat32)
        temporary, permanent = all_failures(message)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception:
        return ()
    found: set[str] = set()
    for address in (*permanent, *temporary):
        text = address.decode("utf-8", "replace") if isinstance(address, bytes) else str(address)
        text = text.strip().strip("<>").strip().lower()
        if text:
            found.add(text[:INDEXED_TEXT_CHARS])
    return tuple(sorted(found))[:_MAX_BOUNCED]


# --------------------------------------------------------------------------- attachments

# puremagic is ambiguous on executables (a PE header also matches a dozen data formats and
# it reports no MIME type for ELF), and executables are the case that matters: check their
# magic numbers first.
_EXECUTABLES: Final = (
    (b"MZ", "application/x-msdownload"),
    (b"\x7fELF", "application/x-executable"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xfe\xed\xfa\xcf", "application/x-mach-binary"),
    (b"\xfe\xed\xfa\xce", "application/x-mach-binary"),
    (b"#!", "text/x-shellscript"),
)
_EXECUTABLE_TYPES: Final = frozenset(
    {name for _, name in _EXECUTABLES}
    | {
        "application/x-dosexec",
        "application/x-msdos-program",
        "application/vnd.microsoft.portable-executable",
    }
)
# Declared types whose bytes have one well-known signature: any other sniffed type means the
# label lies. Containers (zip, OLE, text) are left alone: an .docx is a zip, a .csv is text.
_ALIASES: Final = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
}


def sniff_attachment(attachment: ParsedAttachment) -> Sniffed:
    return sniff(attachment.content, attachment.content_type)


def sniff(content: bytes, declared: str) -> Sniffed:
    sniffed = _sniff_type(content)
    return Sniffed(sniffed_type=sniffed, type_mismatch=_mismatch(declared, sniffed))


def _sniff_type(content: bytes) -> str | None:
    for magic, name in _EXECUTABLES:
        if content.startswith(magic):
            return name
    # puremagic's answer (it reads only the head and the tail of the bytes), looked up
    # by worker.ingest.file_types; None when no signature matched (plain text, random bytes).
    found = file_types.mime_type(content)
    return found[:CONTENT_TYPE_CHARS] if found else None


def _mismatch(declared: str, sniffed: str | None) -> bool:
    if sniffed is None:
        return False
    declared = _ALIASES.get(declared.lower().strip(), declared.lower().strip())
    sniffed = _ALIASES.get(sniffed.lower(), sniffed.lower())
    if sniffed in _EXECUTABLE_TYPES:
        return declared not in _EXECUTABLE_TYPES
    if declared == "application/pdf":
        return sniffed != declared
    if declared.startswith(("image/", "audio/", "video/")):
        # A PNG labelled image/jpeg is harmless; a "photo" that is a PDF or a zip is not.
        return sniffed.split("/")[0] != declared.split("/")[0]
    return False
