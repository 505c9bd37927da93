"""What the email routes answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.attachments.schemas import ATTACHMENT_EXAMPLE, AttachmentOut
from api.openapi import EXAMPLE_TIME, example


class Address(BaseModel):
    name: str | None = None
    address: str | None = None


class SpamRule(BaseModel):
    name: str | None = None
    score: float | None = None
    description: str | None = None


_EMAIL_SUMMARY: dict[str, Any] = {
    "id": 42,
    "message_id": "<CAF=abc123@mail.example.org>",
    "subject": "Invoice November",
    "from_address": "ana@example.org",
    "from_name": "Ana Lima",
    "to": [{"name": "Support", "address": "support@example.com"}],
    "envelope_recipient": "support@example.com",
    "received_at": EXAMPLE_TIME,
    "sent_at": "2026-11-26T09:13:58Z",
    "spam_score": 0.4,
    "spf_result": "pass",
    "dkim_valid": True,
    "sender_trust": "pass",
    "attachment_count": 1,
    "delivery_id": "6c1e0d8a-2f4b-4c47-9a53-0b1f3c2e9d11",
}


class EmailSummary(BaseModel):
    model_config = example(_EMAIL_SUMMARY)

    id: int
    message_id: str | None
    subject: str | None
    from_address: str | None
    from_name: str | None
    to: list[Address]
    envelope_recipient: str | None = Field(description="The address Mandrill delivered to.")
    received_at: datetime
    sent_at: datetime | None = Field(description="The Date header.")
    spam_score: float | None
    spf_result: str | None
    dkim_valid: bool | None
    sender_trust: str | None = Field(
        default=None,
        description="Whether the From: is authenticated: `pass` (its domain is DMARC-aligned "
        "with a verifying DKIM signature or Mandrill's SPF pass), `fail`, `none` (nothing "
        "proven either way), `unknown` (DNS did not answer); null: not checked.",
    )
    attachment_count: int
    delivery_id: str


class EmailDetail(EmailSummary):
    model_config = example(
        {
            **_EMAIL_SUMMARY,
            "cc": [],
            "bcc": [],
            "reply_to": [],
            "in_reply_to": None,
            "references": [],
            "text_body": "Hello,\n\nthe invoice is attached.\n",
            "html_body": None,
            "headers": [["From", "Ana Lima <ana@example.org>"], ["Subject", "Invoice November"]],
            "tags": [],
            "spam_rules": [{"name": "HTML_MESSAGE", "score": 0.0, "description": "HTML included"}],
            "spf_detail": "sender SPF authorized",
            "dkim_signed": True,
            "mandrill_ts": "2026-11-26T09:14:01Z",
            "raw_sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            "raw_size": 66120,
            "raw_url": "/api/v1/emails/42/raw",
            "conversation_id": "CAF=root1@mail.example.org",
            "mailbox_hash": None,
            "reply_text": "Hello,\n\nthe invoice is attached.",
            "forwarded_text": None,
            "auto_submitted": False,
            "auto_submitted_reason": None,
            "bounced_addresses": [],
            "bulk": False,
            "charset_refused": False,
            "sender_trust_reasons": {"verdict": "aligned DKIM signature"},
            "hygiene_flags": [],
            "attachments": [ATTACHMENT_EXAMPLE],
        }
    )

    cc: list[Address]
    bcc: list[Address]
    reply_to: list[Address]
    in_reply_to: str | None
    references: list[str]
    text_body: str | None
    html_body: str | None
    headers: list[tuple[str, str]] = Field(description="Every header, in order, decoded.")
    tags: list[str]
    spam_rules: list[SpamRule]
    spf_detail: str | None
    dkim_signed: bool | None
    mandrill_ts: datetime | None = Field(description="Mandrill's event timestamp.")
    raw_sha256: str
    raw_size: int
    raw_url: str = Field(description="Where to download the original message.")
    conversation_id: str | None = Field(
        description="The thread root: first References id, else In-Reply-To, else Message-ID."
    )
    mailbox_hash: str | None = Field(
        description="Plus-address tag of the envelope recipient (`inbox+ticket-42@` gives "
        "`ticket-42`)."
    )
    reply_text: str | None = Field(
        description="The new text, without quoted history, reply headers or signature."
    )
    forwarded_text: str | None = Field(
        description="For a forward, the forwarded message (its header lines and body)."
    )
    auto_submitted: bool = Field(
        description="Written by a machine (auto-reply, bounce, report): never answer it "
        "automatically (RFC 3834)."
    )
    auto_submitted_reason: str | None = Field(
        description="Why: e.g. `auto-submitted:auto-replied`, `dsn`, `sender:mailer-daemon`."
    )
    bounced_addresses: list[str] = Field(
        description="Addresses a bounce reports as failed (domain lower-cased)."
    )
    bulk: bool = Field(
        description="Came through a mailing list or a bulk sender (`Precedence: bulk|list|"
        "junk`, `List-Id`, ...): a person may have written it, but never answer it "
        "automatically (RFC 3834)."
    )
    sender_trust_reasons: dict[str, Any] | None = Field(
        default=None,
        description="The verdict's evidence: each DKIM signature's result, Mandrill's SPF, "
        "the DMARC policy found, the ARC chain, and why.",
    )
    hygiene_flags: list[str] = Field(
        default_factory=list,
        description="Content not to take at face value: `hidden_html_text`, "
        "`zero_width_chars`, `bidi_control_chars`, `text_html_mismatch`.",
    )
    charset_refused: bool = Field(
        description="A text part declared a charset that is not a mail charset (punycode, "
        "utf-7, ...): its text was read as UTF-8, with U+FFFD for bytes that are not."
    )
    attachments: list[AttachmentOut]


class EmailPage(BaseModel):
    model_config = example({"items": [_EMAIL_SUMMARY], "next_cursor": "WyIyMDI2LTExLTI2…"})

    items: list[EmailSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class ErasureOut(BaseModel):
    """What an erasure removed (the record is kept in the ``erasures`` table)."""

    model_config = example(
        {
            "erasure_id": 3,
            "emails": 1,
            "attachments": 2,
            "archives": 1,
            "objects_deleted": 3,
            "objects_still_referenced": 1,
            "objects_deferred": 0,
        }
    )

    erasure_id: int
    emails: int
    attachments: int
    archives: int = Field(description="Raw webhook archives removed (whole batches).")
    objects_deleted: int
    objects_still_referenced: int = Field(
        description="Objects kept because another email still names the same content."
    )
    objects_deferred: int = Field(
        description="Objects written within KAVE_ORPHAN_GRACE_SECONDS, kept for now; "
        "the next purge or audit --repair removes them if no row names them then."
    )
