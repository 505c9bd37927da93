"""Reads only the MCP tools make: mailboxes, an email with its text cut to a size, and an
attachment's extracted text. Every one goes through the caller's mailbox condition."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from api.access.mailboxes import may_see
from api.access.principal import Principal
from shared.models import Attachment, Email
from shared.objectstore import ObjectNotFoundError, ObjectStore


def cut(text: str | None, max_chars: int) -> tuple[str | None, bool]:
    """``text`` cut to ``max_chars``, and whether anything was cut."""
    if text is None or len(text) <= max_chars:
        return text, False
    return text[:max_chars], True


def list_mailboxes(
    session: Session, visible: ColumnElement[bool] | None, *, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Envelope recipients (lower-cased) with their email counts, alphabetically."""
    mailbox = func.lower(Email.envelope_recipient)
    stmt = select(
        mailbox.label("mailbox"),
        func.count().label("emails"),
        func.max(Email.received_at).label("last_received_at"),
    ).where(Email.envelope_recipient.is_not(None))
    if visible is not None:
        stmt = stmt.where(visible)
    if after is not None:
        stmt = stmt.where(mailbox > after)
    rows = session.execute(stmt.group_by(mailbox).order_by(mailbox).limit(limit + 1)).all()
    items = [
        {
            "mailbox": row.mailbox,
            "emails": row.emails,
            "last_received_at": row.last_received_at.isoformat(),
        }
        for row in rows[:limit]
    ]
    return items, items[-1]["mailbox"] if len(rows) > limit else None


def text_key(attachment: Attachment) -> str:
    """Where attachment text extraction (issue 32) leaves an attachment's text."""
    return f"text/{attachment.sha256}.md"


def attachment_text(
    session: Session,
    store: ObjectStore,
    principal: Principal,
    attachment_id: int,
    *,
    offset: int,
    max_chars: int,
) -> dict[str, Any]:
    attachment = session.get(Attachment, attachment_id)
    if attachment is None or not may_see(principal, attachment.email):
        return {"status": "not_found", "message": f"no attachment {attachment_id}"}
    try:
        text = store.get(text_key(attachment)).decode("utf-8", errors="replace")
    except ObjectNotFoundError:
        return {
            "attachment_id": attachment_id,
            "filename": attachment.filename,
            "status": "not_available",
            "message": (
                "the text of this attachment is not available yet: attachment text "
                "extraction has not run for it; read its bytes from content_url instead"
            ),
            "content_url": f"/api/v1/attachments/{attachment_id}/content",
        }
    part = text[offset : offset + max_chars]
    end = offset + len(part)
    return {
        "attachment_id": attachment_id,
        "filename": attachment.filename,
        "status": "ok",
        "text": part,
        "total_chars": len(text),
        "next_offset": end if end < len(text) else None,
    }


def email_for_agent(email: Email, *, max_chars: int) -> dict[str, Any]:
    body, body_cut = cut(email.text_body, max_chars)
    reply, reply_cut = cut(email.reply_text, max_chars)
    return {
        "id": email.id,
        "conversation_id": email.conversation_id,
        "message_id": email.message_id,
        "received_at": email.received_at.isoformat(),
        "sent_at": email.sent_at.isoformat() if email.sent_at else None,
        "from_address": email.from_address,
        "from_name": email.from_name,
        "to": email.to,
        "cc": email.cc,
        "envelope_recipient": email.envelope_recipient,
        "subject": email.subject,
        "reply_text": reply,
        "text_body": body,
        "truncated": body_cut or reply_cut,
        "auto_submitted": email.auto_submitted,
        "bulk": email.bulk,
        "spf_result": email.spf_result,
        "dkim_valid": email.dkim_valid,
        "attachments": [
            {
                "id": a.id,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "content_url": f"/api/v1/attachments/{a.id}/content",
            }
            for a in email.attachments
        ],
    }
