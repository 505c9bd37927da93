"""SQL conditions the list filters share, each written the way its index is built
(migration 0012, the indexes in shared/models/)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, bindparam, exists, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from shared.models import Attachment, Email


def lower_equals(column: Any, value: str) -> ColumnElement[bool]:
    """``lower(column) = value``, case-insensitive: served by an index on ``lower(column)``."""
    return func.lower(column) == value.lower()


def has_recipient(address: str) -> ColumnElement[bool]:
    """The envelope recipient or a To or Cc address is ``address`` (case-insensitive):
    containment in ``emails.recipient_addresses``, which its GIN index answers."""
    wanted = bindparam("recipient", [address.lower()], type_=ARRAY(Text))
    return Email.recipient_addresses.contains(wanted)


def subject_contains(needle: str) -> ColumnElement[bool]:
    """The subject contains ``needle`` in any case: ``subject ILIKE '%needle%'``, the form
    its trigram index (``gin_trgm_ops``) answers (``lower(subject) LIKE`` it does not).
    LIKE's wildcards in ``needle`` are escaped: they match themselves."""
    escaped = needle.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return Email.subject.ilike(f"%{escaped}%", escape="/")


def mail_conditions(
    *,
    sender: str | None,
    recipient: str | None,
    since: datetime | None,
    until: datetime | None,
    has_attachments: bool | None,
) -> list[ColumnElement[bool]]:
    """The filters the email list and search share: sender, recipient, the received
    window and whether any attachment exists (None: not filtered)."""
    conditions: list[ColumnElement[bool]] = []
    if sender is not None:
        conditions.append(lower_equals(Email.from_address, sender))
    if recipient is not None:
        conditions.append(has_recipient(recipient))
    if since is not None:
        conditions.append(Email.received_at >= since)
    if until is not None:
        conditions.append(Email.received_at < until)
    if has_attachments is not None:
        any_attachment = exists(select(Attachment.id).where(Attachment.email_id == Email.id))
        conditions.append(any_attachment if has_attachments else ~any_attachment)
    return conditions
