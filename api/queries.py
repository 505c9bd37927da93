"""The management API's data access, kept out of the routes. What the ``kave`` CLI runs
too (dead letters, deliveries) lives in shared/queries/ and is used from there.

Lists use keyset pagination, newest first: rows are ordered by (timestamp, id) descending
and a cursor is the (timestamp, id) of the last row of the previous page, so a page never
misses or repeats a row, however many rows arrive meanwhile. Cursors are opaque to
clients (base64 of that pair) and carry nothing secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy import ColumnElement, Select, exists, func, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute, Session, defer, selectinload

from shared.models import Attachment, DeadLetter, Delivery, Email, Event, User
from shared.queries.dead_letters import DeadLetterFilters, discard_open, select_dead_letters
from shared.queries.deliveries import outcome_counts

log = structlog.get_logger(__name__)

RowT = TypeVar("RowT")


# --- users --------------------------------------------------------------------------


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_name(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).one_or_none()


# --- pagination ---------------------------------------------------------------------


class InvalidCursorError(ValueError):
    """The cursor was not made by this API (or by this list)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    at: datetime
    id: int | str

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), self.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str, id_type: type[int] | type[str]) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            at_text, id_value = json.loads(raw)
            at = datetime.fromisoformat(at_text)
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise InvalidCursorError("not a cursor of this list") from None
        if at.tzinfo is None or type(id_value) is not id_type or not _plausible_id(id_value):
            raise InvalidCursorError("not a cursor of this list")
        return cls(at=at, id=id_value)


def _plausible_id(value: int | str) -> bool:
    # Out-of-range values would reach PostgreSQL as errors (BIGINT, text without NUL).
    if isinstance(value, int):
        return 0 < value < 2**63
    return 0 < len(value) <= 64 and "\x00" not in value


@dataclass(frozen=True, slots=True)
class Page(Generic[RowT]):
    rows: list[RowT]
    next_cursor: str | None


def _keyset(
    stmt: Select[Any],
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[Any],
    cursor: Cursor | None,
    limit: int,
) -> Select[Any]:
    if cursor is not None:
        stmt = stmt.where(tuple_(at, id_) < tuple_(sa.literal(cursor.at, at.type), cursor.id))
    return stmt.order_by(at.desc(), id_.desc()).limit(limit + 1)


def _page(rows: Sequence[RowT], limit: int, key: Any) -> Page[RowT]:
    """``rows`` holds up to ``limit + 1``; the extra one only says another page exists."""
    page = list(rows[:limit])
    if len(rows) <= limit:
        return Page(page, None)
    at, id_ = key(page[-1])
    return Page(page, Cursor(at, id_).encode())


def _lower_equals(column: Any, value: str) -> ColumnElement[bool]:
    return func.lower(column) == value.lower()


def _has_address(column: InstrumentedAttribute[list[Any]], address: str) -> ColumnElement[bool]:
    """The JSON list of ``{"name", "address"}`` holds ``address`` (case-insensitive)."""
    element = func.jsonb_array_elements(column).table_valued(sa.column("value", JSONB)).alias()
    return exists(
        select(1)
        .select_from(element)
        .where(func.lower(element.c.value["address"].astext) == address.lower())
    )


# --- emails -------------------------------------------------------------------------


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
    conditions: list[ColumnElement[bool]] = []
    if f.sender is not None:
        conditions.append(_lower_equals(Email.from_address, f.sender))
    if f.recipient is not None:
        conditions.append(
            sa.or_(
                _lower_equals(Email.envelope_recipient, f.recipient),
                _has_address(Email.to, f.recipient),
                _has_address(Email.cc, f.recipient),
            )
        )
    if f.subject is not None:
        conditions.append(Email.subject.icontains(f.subject, autoescape=True))
    if f.since is not None:
        conditions.append(Email.received_at >= f.since)
    if f.until is not None:
        conditions.append(Email.received_at < f.until)
    if f.has_attachments is not None:
        any_attachment = exists(select(Attachment.id).where(Attachment.email_id == Email.id))
        conditions.append(any_attachment if f.has_attachments else ~any_attachment)
    if f.spf_result is not None:
        conditions.append(_lower_equals(Email.spf_result, f.spf_result))
    if f.max_spam_score is not None:
        conditions.append(Email.spam_score <= f.max_spam_score)
    return conditions


def list_emails(
    session: Session, filters: EmailFilters, *, cursor: Cursor | None, limit: int
) -> tuple[Page[Email], dict[int, int]]:
    """A page of emails (without bodies and headers) and their attachment counts."""
    stmt = (
        select(Email)
        .options(defer(Email.text_body), defer(Email.html_body), defer(Email.headers))
        .where(*_email_conditions(filters))
    )
    rows = session.scalars(_keyset(stmt, Email.received_at, Email.id, cursor, limit)).all()
    page = _page(rows, limit, lambda email: (email.received_at, email.id))
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


def get_email(session: Session, email_id: int) -> Email | None:
    return session.scalars(
        select(Email).options(selectinload(Email.attachments)).where(Email.id == email_id)
    ).one_or_none()


def get_attachment(session: Session, attachment_id: int) -> Attachment | None:
    return session.get(Attachment, attachment_id)


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFilters:
    kind: str | None = None
    recipient: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_events(
    session: Session, filters: EventFilters, *, cursor: Cursor | None, limit: int
) -> Page[Event]:
    stmt = select(Event)
    if filters.kind is not None:
        stmt = stmt.where(Event.kind == filters.kind)
    if filters.recipient is not None:
        stmt = stmt.where(_lower_equals(Event.recipient, filters.recipient))
    if filters.since is not None:
        stmt = stmt.where(Event.occurred_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Event.occurred_at < filters.until)
    rows = session.scalars(_keyset(stmt, Event.created_at, Event.id, cursor, limit)).all()
    return _page(rows, limit, lambda event: (event.created_at, event.id))


# --- deliveries ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryFilters:
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_deliveries(
    session: Session, filters: DeliveryFilters, *, cursor: Cursor | None, limit: int
) -> tuple[Page[Delivery], dict[str, dict[str, int]]]:
    """A page of deliveries and, per delivery, its count of events by outcome."""
    stmt = select(Delivery)
    if filters.status is not None:
        stmt = stmt.where(Delivery.status == filters.status)
    if filters.since is not None:
        stmt = stmt.where(Delivery.received_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Delivery.received_at < filters.until)
    rows = session.scalars(_keyset(stmt, Delivery.received_at, Delivery.id, cursor, limit)).all()
    page = _page(rows, limit, lambda delivery: (delivery.received_at, delivery.id))
    return page, outcome_counts(session, [delivery.id for delivery in page.rows])


# --- dead letters -------------------------------------------------------------------


def list_dead_letters(
    session: Session, filters: DeadLetterFilters, *, cursor: Cursor | None, limit: int
) -> Page[DeadLetter]:
    stmt = select_dead_letters(filters).options(defer(DeadLetter.traceback))
    rows = session.scalars(
        _keyset(stmt, DeadLetter.first_seen_at, DeadLetter.id, cursor, limit)
    ).all()
    return _page(rows, limit, lambda dead_letter: (dead_letter.first_seen_at, dead_letter.id))


def discard_dead_letter(session: Session, dead_letter_id: int) -> DeadLetter | None:
    """Mark an *open* dead letter discarded; ``None`` when it is missing or not open."""
    discarded = discard_open(session, [dead_letter_id])
    session.commit()
    return discarded[0] if discarded else None
