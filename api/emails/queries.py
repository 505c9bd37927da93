"""Searching and reading stored emails."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, load_only, selectinload

from api.filters import lower_equals, mail_conditions, subject_contains
from api.pagination import Cursor, Page, paginate
from shared.models import Attachment, Email

# What a page of the email list shows (api.emails.schemas.EmailSummary), and all it loads:
# the other columns hold bodies, headers and JSON lists (cc, bcc, tags, spam rules, ...),
# and decoding those for every row was most of a page's CPU. raiseload makes reading
# any other column of a listed email an error instead of a query per row.
SUMMARY_COLUMNS = (
    Email.id,
    Email.message_id,
    Email.subject,
    Email.from_address,
    Email.from_name,
    Email.to,
    Email.envelope_recipient,
    Email.received_at,
    Email.sent_at,
    Email.spam_score,
    Email.spf_result,
    Email.dkim_valid,
    Email.sender_trust,
    Email.delivery_id,
)


@dataclass(frozen=True, slots=True)
class EmailFilters:
    sender: str | None = None
    recipient: str | None = None
    subject: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    has_attachments: bool | None = None
    spf_result: str | None = None
    max_spam_score: float | None = None


def _email_conditions(f: EmailFilters) -> list[ColumnElement[bool]]:
    conditions = mail_conditions(
        sender=f.sender,
        recipient=f.recipient,
        since=f.since,
        until=f.until,
        has_attachments=f.has_attachments,
    )
    if f.subject is not None:
        conditions.append(subject_contains(f.subject))
    if f.spf_result is not None:
        conditions.append(lower_equals(Email.spf_result, f.spf_result))
    if f.max_spam_score is not None:
        conditions.append(Email.spam_score <= f.max_spam_score)
    return conditions


def list_emails(
    session: Session,
    filters: EmailFilters,
    *,
    cursor: Cursor | None,
    limit: int,
    visible: ColumnElement[bool] | None = None,
) -> tuple[Page[Email], dict[int, int]]:
    """A page of emails (their summary columns only) and their attachment counts;
    ``visible`` narrows to a scoped caller's mailboxes (api.access.mailboxes)."""
    stmt = (
        select(Email)
        .options(load_only(*SUMMARY_COLUMNS, raiseload=True))
        .where(*_email_conditions(filters))
    )
    if visible is not None:
        stmt = stmt.where(visible)
    page: Page[Email] = paginate(
        session, stmt, Email.received_at, Email.id, cursor=cursor, limit=limit
    )
    return page, attachment_counts(session, [email.id for email in page.rows])


def attachment_counts(session: Session, email_ids: list[int]) -> dict[int, int]:
    if not email_ids:
        return {}
    rows = session.execute(
        select(Attachment.email_id, func.count())
        .where(Attachment.email_id.in_(email_ids))
        .group_by(Attachment.email_id)
    ).all()
    return dict(rows)


def get_email(
    session: Session, email_id: int, *, visible: ColumnElement[bool] | None = None
) -> Email | None:
    """The email with its attachments, if it exists and ``visible`` lets the caller see it."""
    stmt = select(Email).options(selectinload(Email.attachments)).where(Email.id == email_id)
    if visible is not None:
        stmt = stmt.where(visible)
    return session.scalars(stmt).one_or_none()
