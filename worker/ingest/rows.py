"""Rows in: a parsed email or event turned into the column values storage writes.

Pure (an import contract keeps it so): the derivations (worker.ingest.derive) are computed
here, so the storage modules only run statements."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.ingest import derive
from worker.ingest.columns import (
    CONTENT_TYPE_CHARS,
    KIND_CHARS,
    MANDRILL_ID_CHARS,
    SPF_RESULT_CHARS,
    bounded,
    without_nul,
)
from worker.ingest.derive.threads import parent_message_ids
from worker.ingest.parsing import Address, ParsedEmail, ParsedEvent


@dataclass(frozen=True)
class EmailRows:
    """An email as storage writes it: the email row's column values (derivations
    included), its attachment rows in order, the keys of the objects they name, and the
    Message-IDs of the stored emails whose conversation it joins if one is stored
    (``worker.ingest.derive.threads.parent_message_ids``: the conversation id in
    ``values`` is the fallback when none is)."""

    values: dict[str, Any]
    attachments: list[dict[str, Any]]
    object_keys: list[str]  # sorted, each once
    parent_ids: tuple[str, ...] = ()

    @property
    def dedup_key(self) -> str:
        return str(self.values["dedup_key"])


# The columns computed with I/O before the rows (worker.ingest.trust, worker.ingest.scan),
# None when not computed: every row has every key (one insert statement for all).
TRUST_COLUMNS = ("sender_trust", "sender_trust_reasons")
SCAN_COLUMNS = ("scan_status", "scan_signature")


def email_rows(
    email: ParsedEmail,
    trust: Mapping[str, Any] | None = None,
    scans: Sequence[Mapping[str, Any]] | None = None,
) -> EmailRows:
    """The rows of a parsed email: the one step between parsing and storage.

    ``trust``: the sender-trust columns (``worker.ingest.trust``); ``scans``: each
    attachment's scan columns, in order (``worker.ingest.scan``). Both are computed
    before, with I/O; absent, those columns are NULL."""
    keys = {raw_message_key(email.raw_sha256)}
    keys.update(attachment_key(attachment.sha256) for attachment in email.attachments)
    parents = parent_message_ids(email.in_reply_to, email.references)
    values = email_values(email)
    if trust is not None:
        values.update(without_nul({name: trust.get(name) for name in TRUST_COLUMNS}))
    attachments = attachment_values(email)
    for row, scan in zip(attachments, scans or (), strict=False):
        row.update({name: scan.get(name) for name in SCAN_COLUMNS})
    return EmailRows(values, attachments, sorted(keys), parents)


def raw_message_key(sha256: str) -> str:
    return f"messages/{sha256[:2]}/{sha256}.eml"


def attachment_key(sha256: str) -> str:
    return f"attachments/{sha256[:2]}/{sha256}"


def _addresses(addresses: tuple[Address, ...]) -> list[dict[str, str | None]]:
    return [{"name": a.name, "address": a.address} for a in addresses]


def recipient_addresses(email: ParsedEmail) -> list[str]:
    """The envelope recipient and every To and Cc address, lower-cased, each once, in code
    point order: the ``recipient`` filter's indexed column (migration 0012 backfills rows
    stored before it with the same SQL rule). Each is cut to the indexed length, as the
    envelope recipient is."""
    return lowered_addresses(
        [email.envelope_recipient, *(a.address for a in (*email.to, *email.cc))]
    )


def lowered_addresses(addresses: Iterable[str | None]) -> list[str]:
    """Addresses as ``emails.recipient_addresses`` holds them: lower-cased, cut to the
    indexed length, without NUL, each once, sorted; empty ones left out."""
    return sorted({without_nul(bounded(a) or "").lower() for a in addresses} - {""})


def email_values(email: ParsedEmail) -> dict[str, Any]:
    """The column values of an email row (without the delivery that first brought it)."""
    values: dict[str, Any] = without_nul(
        {
            "dedup_key": email.dedup_key,
            "message_id": bounded(email.message_id),
            "raw_sha256": email.raw_sha256,
            "raw_size": len(email.raw),
            "raw_key": raw_message_key(email.raw_sha256),
            "envelope_recipient": bounded(email.envelope_recipient),
            "from_address": bounded(email.from_address),
            "from_name": email.from_name,
            "to": _addresses(email.to),
            "cc": _addresses(email.cc),
            "bcc": _addresses(email.bcc),
            "reply_to": _addresses(email.reply_to),
            "subject": email.subject,
            "in_reply_to": email.in_reply_to,
            "references": list(email.references),
            "text_body": email.text_body,
            "html_body": email.html_body,
            "headers": [list(pair) for pair in email.headers],
            "tags": list(email.tags),
            "spam_score": email.spam_score,
            "spam_rules": [
                {"name": r.name, "score": r.score, "description": r.description}
                for r in email.spam_rules
            ],
            "spf_result": email.spf_result[:SPF_RESULT_CHARS] if email.spf_result else None,
            "spf_detail": email.spf_detail,
            "dkim_signed": email.dkim_signed,
            "dkim_valid": email.dkim_valid,
            "charset_refused": email.charset_refused,
            "recipient_addresses": recipient_addresses(email),
        }
    )
    # datetimes are not touched by without_nul; add them after.
    values["sent_at"] = email.sent_at
    values["mandrill_ts"] = email.mandrill_ts
    # The derived fields (worker.ingest.derive) are columns of the same
    # row, so they are written with the email and recomputed by `kave reprocess`.
    values.update(without_nul(derive.email_columns(email)))
    # The sender-trust verdict, when on (email_rows: worker.ingest.trust).
    values.update(dict.fromkeys(TRUST_COLUMNS))
    return values


def attachment_values(email: ParsedEmail) -> list[dict[str, Any]]:
    """The attachment rows of an email, in order (without the email id)."""
    return [
        without_nul(
            {
                "position": position,
                "filename": a.filename,
                "content_type": a.content_type[:CONTENT_TYPE_CHARS],
                "size": a.size,
                "sha256": a.sha256,
                "object_key": attachment_key(a.sha256),
                "content_id": a.content_id,
                "inline": a.inline,
                # Sniffed type, type_mismatch, the first text_status (worker.ingest.derive).
                **derive.attachment_columns(a),
                # The malware scan, when on (email_rows: worker.ingest.scan).
                **dict.fromkeys(SCAN_COLUMNS),
            }
        )
        for position, a in enumerate(email.attachments)
    ]


# The columns attachment_values gives (tests/worker/test_email_rows.py checks it).
ATTACHMENT_COLUMNS = (
    "position",
    "filename",
    "content_type",
    "size",
    "sha256",
    "object_key",
    "content_id",
    "inline",
    "sniffed_type",
    "type_mismatch",
    *SCAN_COLUMNS,
    "text_status",
)


def event_values(event: ParsedEvent) -> dict[str, Any]:
    """The column values of an event row (without the delivery that first brought it)."""
    return {
        "dedup_key": event.dedup_key,
        "kind": without_nul(event.kind)[:KIND_CHARS],
        "occurred_at": event.occurred_at,
        "mandrill_id": without_nul(event.mandrill_id)[:MANDRILL_ID_CHARS]
        if event.mandrill_id
        else None,
        "recipient": bounded(without_nul(event.recipient)),
        # Round-trip through JSON so that the stored document is exactly JSON (no tuples).
        "payload": without_nul(json.loads(json.dumps(event.payload))),
    }
