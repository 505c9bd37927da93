"""What a search looks in. Each source is a SELECT of the ``emails`` rows (``id``,
``received_at``) whose text in that source matches the query; :mod:`queries` applies the
filters, the caller's mailboxes and the page's keyset to each, and merges the pages.

A page per source, merged, rather than one ``WHERE a OR b``: PostgreSQL cannot combine an
index on ``emails`` with one on another table in one bitmap, so an OR is checked row by
row, newest first, reading each email's document: a rare word then reads the whole
table. Each source alone keeps the plan its own index gives it.

- ``email_text``: subject, reply text and body, the tsvector ``emails.search_document``
  (migration 0013), GIN index ``ix_emails_search``.
- ``attachment_text``: the text extracted from the email's attachments (issue 32), once
  it is ready: ``attachment_texts.search_document`` per content (migration 0014), GIN
  index ``ix_attachment_texts_search``, reached through the attachments whose text is
  ready (``ix_attachments_text_ready``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, select

from shared.models import Attachment, AttachmentText, Email

Source = Callable[[ColumnElement[Any]], Select[int, datetime]]


def _emails() -> Select[int, datetime]:
    return select(Email.id, Email.received_at)


def email_text(query: ColumnElement[Any]) -> Select[int, datetime]:
    """The email's own text."""
    return _emails().where(Email.search_document.bool_op("@@")(query))


def attachment_hits(query: ColumnElement[Any]) -> Select[int, int, str]:
    """The attachments (``email_id``, ``id``, ``sha256``) whose ready text matches."""
    return (
        select(Attachment.email_id, Attachment.id, Attachment.sha256)
        .join(AttachmentText, AttachmentText.sha256 == Attachment.sha256)
        .where(
            Attachment.text_status == "ready",
            Attachment.content_removed_at.is_(None),
            AttachmentText.search_document.bool_op("@@")(query),
        )
    )


def attachment_text(query: ColumnElement[Any]) -> Select[int, datetime]:
    """The text of the email's attachments (each email once, however many match)."""
    matching = attachment_hits(query).with_only_columns(Attachment.email_id)
    return _emails().where(Email.id.in_(matching))


SOURCES: list[Source] = [email_text, attachment_text]
