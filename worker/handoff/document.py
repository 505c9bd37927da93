"""What an HTTP handler receives for one dispatch: the JSON document, from one definition.

Role: the body of a hand-off POST is built either from the stored row (a task's attempt,
``worker.handoff.dispatch.webhook_body``) or from the values the worker has just inserted (the
inline hand-off right after the commit, ``worker.handoff.outbox``), saving that hand-off a read.
Both go through :func:`email_fields` and :func:`document`: the same keys in the same
order, the same values (``tests/worker/test_handoff_dispatch.py`` compares them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from shared.contract import attachment_text_url
from shared.models import Attachment, Email

EVENT_TYPE = "email.received"

# What an agent needs, without the raw message or the bodies' full text.
BODY_COLUMNS = (
    Email.id,
    Email.message_id,
    Email.in_reply_to,
    Email.conversation_id,
    Email.mailbox_hash,
    Email.envelope_recipient,
    Email.from_address,
    Email.from_name,
    Email.subject,
    Email.reply_text,
    Email.forwarded_text,
    Email.auto_submitted,
    Email.auto_submitted_reason,
    Email.bounced_addresses,
    Email.bulk,
    Email.spam_score,
    Email.spf_result,
    Email.dkim_valid,
    # Whether the From: is proven (pass), with its evidence, and the content flags
    # (hidden text...): what the platform quarantines on.
    Email.sender_trust,
    Email.sender_trust_reasons,
    Email.hygiene_flags,
    Email.received_at,
)
ATTACHMENT_COLUMNS = (
    Attachment.id,
    Attachment.filename,
    Attachment.content_type,
    Attachment.sniffed_type,
    Attachment.type_mismatch,
    Attachment.size,
    # clean, quarantined (malware: the API refuses its bytes), unscanned; null: scanning off.
    Attachment.scan_status,
    # pending, ready, skipped:<reason> or failed (worker/text/); a route with
    # ``after: text`` hands off once none is pending. The excerpt: the text's start;
    # the document adds ``text_url`` (:func:`text_url`) where the whole text is.
    Attachment.text_status,
    Attachment.text_excerpt,
)


def email_fields(
    email: Mapping[str, Any], attachments: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The email part of the body from column values keyed by column (and its attachments',
    in order): what ``webhook_body`` reads, from what the worker inserted."""
    fields = {column.key: email.get(column.key) for column in BODY_COLUMNS}
    fields["attachments"] = [
        {column.key: attachment.get(column.key) for column in ATTACHMENT_COLUMNS}
        for attachment in attachments
    ]
    return fields


def text_url(attachment: Mapping[str, Any]) -> str | None:
    return attachment_text_url(
        attachment["id"], attachment.get("text_status"), attachment.get("scan_status")
    )


def with_text_url(attachment: Mapping[str, Any]) -> dict[str, Any]:
    return {**attachment, "text_url": text_url(attachment)}


def document(fields: Mapping[str, Any], dispatch_id: int, key: str, route: str) -> bytes:
    """The signed POST's body: ``{"type", "timestamp", "data"}``, compact UTF-8 JSON."""
    data = dict(fields)
    attachments = [with_text_url(attachment) for attachment in data.pop("attachments")]
    received_at = data["received_at"]
    data.update(
        email_id=data.pop("id"),
        dispatch_id=dispatch_id,
        idempotency_key=key,
        route=route,
        received_at=received_at.isoformat() if isinstance(received_at, datetime) else None,
        attachments=attachments,
    )
    body = {"type": EVENT_TYPE, "timestamp": datetime.now(UTC).isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
