"""Derived fields of a parsed email: what a platform's agent needs to act on it.

One module per concern: ``threads`` (conversation id, mailbox hash), ``reply`` (reply text,
with ``reply_lines``/``reply_words`` for what a line is, ``signature`` and ``signed_name``
for where a signature starts, ``list_footer`` for the footer a list appends),
``loop_guard`` (auto-submitted, bulk), ``bounces`` (the addresses a bounce reports),
``sniff`` (attachment types), ``hygiene`` (content flags, text cleaning),
``text_formats`` (which attachments get text, as what). This package's face is
:func:`email_columns` and :func:`attachment_columns`, which ``worker.ingest.rows`` merges
into the row values. It imports the parser's types, the column limits and pure libraries
only: no I/O (an import-linter contract keeps it so).

From a :class:`~worker.ingest.parsing.ParsedEmail` it computes the fields stored next to the
email for the hand-off to the platform:

- ``conversation_id``: the thread root (first id of References, else In-Reply-To, else the
  email's own Message-ID; only well-formed ids of the first two count), normalised, so every
  message of a thread shares it. Storage prefers the conversation of a stored email this one
  replies to (``worker.ingest.storage.threads``); this is its fallback;
- ``mailbox_hash``: the plus-address tag of the envelope recipient (``inbox+ticket-42@``
  gives ``ticket-42``), which platforms use to route replies to the object they are about;
- ``reply_text``: the new text without quoted history, attribution lines, Outlook header
  blocks and signatures (a sign-off with the sender's own name too), bottom-posted and
  inline answers kept (``reply``: one pass over the lines, ~30 languages; quotequail cuts
  HTML quotes and inscriptis turns what is left into text when the email has only HTML); for
  a forward, the note above it;
- ``forwarded_text``: for a forward, the forwarded message (its header lines and body);
- ``auto_submitted`` with its reason: written by a machine (RFC 3834 signals,
  delivery-status and other reports, MAILER-DAEMON), with the addresses a bounce names
  (flufl.bounce, then checked), so no agent answers an out-of-office or a bounce and starts
  a mail loop;
- ``bulk`` with its reason: sent through a list or by a bulk sender (``Precedence``,
  ``List-*`` headers), which a person may have written but no agent may auto-answer;
- ``hygiene_flags``: content an agent should not take at face value (``hygiene``: hidden
  HTML text, zero-width and bidi-control characters, a text part unlike the HTML part);
  ``reply_text`` and ``forwarded_text`` are stored NFC-normalised without control
  characters (``hygiene.clean_text``);
- per attachment, the type sniffed from its bytes (puremagic) and whether it contradicts the
  declared type (an ``.pdf`` that is an executable).

Every function is total: a library that raises on odd input gives ``None`` (or "not
detected"), never a failed email, since the derived fields are advisory and re-derivable
with ``kave reprocess``.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.ingest.derive import text_formats
from worker.ingest.derive.bounces import bounced_addresses
from worker.ingest.derive.hygiene import clean_text, hygiene_flags
from worker.ingest.derive.loop_guard import auto_submitted, bulk
from worker.ingest.derive.reply import reply_parts, reply_text
from worker.ingest.derive.sniff import Sniffed, sniff, sniff_attachment
from worker.ingest.derive.threads import conversation_id, mailbox_hash, normalize_message_id
from worker.ingest.parsing import ParsedAttachment, ParsedEmail

__all__ = [
    "Derived",
    "Sniffed",
    "attachment_columns",
    "auto_submitted",
    "bounced_addresses",
    "bulk",
    "conversation_id",
    "derive_email",
    "email_columns",
    "hygiene_flags",
    "mailbox_hash",
    "normalize_message_id",
    "reply_parts",
    "reply_text",
    "sniff",
    "sniff_attachment",
]


@dataclass(frozen=True, slots=True)
class Derived:
    conversation_id: str | None
    mailbox_hash: str | None
    reply_text: str | None
    auto_submitted: bool
    auto_submitted_reason: str | None  # e.g. "auto-submitted:auto-replied", "dsn"
    bounced_addresses: tuple[str, ...]
    forwarded_text: str | None = None
    bulk: bool = False
    # Not stored (emails has no column for it): for tests, the evaluation and debugging.
    bulk_reason: str | None = None  # e.g. "precedence:list", "list-id"
    hygiene_flags: tuple[str, ...] = ()


def derive_email(email: ParsedEmail) -> Derived:
    """All derived fields of an email (attachments: :func:`sniff_attachment`)."""
    flagged, reason, bounced = auto_submitted(email)
    listed, list_reason = bulk(email)
    reply = reply_parts(
        email.text_body, email.html_body, email.subject, email.from_name, email.from_address
    )
    return Derived(
        conversation_id=conversation_id(email.message_id, email.in_reply_to, email.references),
        mailbox_hash=mailbox_hash(email.envelope_recipient),
        reply_text=clean_text(reply.reply_text),
        auto_submitted=flagged,
        auto_submitted_reason=reason,
        bounced_addresses=bounced,
        forwarded_text=clean_text(reply.forwarded_text),
        bulk=listed,
        bulk_reason=list_reason,
        hygiene_flags=tuple(hygiene_flags(email.subject, email.text_body, email.html_body)),
    )


def email_columns(email: ParsedEmail) -> dict[str, object]:
    """The derived columns of an email row (worker.ingest.storage merges them into its values)."""
    derived = derive_email(email)
    return {
        "conversation_id": derived.conversation_id,
        "mailbox_hash": derived.mailbox_hash,
        "reply_text": derived.reply_text,
        "forwarded_text": derived.forwarded_text,
        "auto_submitted": derived.auto_submitted,
        "auto_submitted_reason": derived.auto_submitted_reason,
        "bounced_addresses": list(derived.bounced_addresses),
        "bulk": derived.bulk,
        "hygiene_flags": list(derived.hygiene_flags),
    }


def attachment_columns(attachment: ParsedAttachment) -> dict[str, object]:
    """The derived columns of an attachment row."""
    sniffed = sniff_attachment(attachment)
    text_status = text_formats.initial_status(
        attachment.filename, attachment.content_type, sniffed.sniffed_type, attachment.size
    )
    return {
        "sniffed_type": sniffed.sniffed_type,
        "type_mismatch": sniffed.type_mismatch,
        "text_status": text_status,
    }
