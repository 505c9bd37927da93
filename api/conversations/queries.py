"""Reading threads: the conversations newest activity first, and a thread's emails in the
order they arrived. Both take the caller's mailbox condition (api.access.mailboxes), so a
scoped key sees a thread only through the emails of its own mailboxes.

Listing groups the (filtered) emails by conversation on every call: linear in the emails
that match the filters. A mailbox filter keeps that small; a conversations table kept by
ingest would make the unfiltered list cheap too, and is not built yet.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, tuple_
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session, selectinload

from shared.models import Email

MAX_ID_CHARS = 1000


class BadCursorError(ValueError):
    """Not a cursor this list made."""


def encode_cursor(at: datetime, key: str | int) -> str:
    raw = json.dumps([at.isoformat(), key], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str, key_type: type[str] | type[int]) -> tuple[datetime, Any]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        at_text, key = json.loads(raw)
        at = datetime.fromisoformat(at_text)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadCursorError("not a cursor of this list") from None
    valid_key = (
        type(key) is key_type
        and (0 < key < 2**63 if isinstance(key, int) else 0 < len(key) <= MAX_ID_CHARS)
        and "\x00" not in str(key)
    )
    if at.tzinfo is None or not valid_key:
        raise BadCursorError("not a cursor of this list")
    return at, key


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: str
    last_activity_at: datetime
    email_count: int
    subject: str | None = None
    last_from_address: str | None = None


def list_conversations(
    session: Session,
    *,
    conditions: list[ColumnElement[bool]],
    cursor: tuple[datetime, str] | None,
    limit: int,
) -> tuple[list[ConversationRow], str | None]:
    last = func.max(Email.received_at).label("last_activity_at")
    grouped = (
        select(Email.conversation_id.label("id"), last, func.count().label("email_count"))
        .where(Email.conversation_id.is_not(None), *conditions)
        .group_by(Email.conversation_id)
        .subquery()
    )
    stmt = select(grouped)
    if cursor is not None:
        stmt = stmt.where(tuple_(grouped.c.last_activity_at, grouped.c.id) < tuple_(*cursor))
    found = session.execute(
        stmt.order_by(grouped.c.last_activity_at.desc(), grouped.c.id.desc()).limit(limit + 1)
    ).all()
    rows = [ConversationRow(r.id, r.last_activity_at, r.email_count) for r in found[:limit]]
    latest = _latest_emails(session, [r.id for r in rows], conditions)
    rows = [
        ConversationRow(r.id, r.last_activity_at, r.email_count, *latest.get(r.id, (None, None)))
        for r in rows
    ]
    more = len(found) > limit
    next_cursor = encode_cursor(rows[-1].last_activity_at, rows[-1].id) if more else None
    return rows, next_cursor


def _latest_emails(
    session: Session, ids: list[str], conditions: list[ColumnElement[bool]]
) -> dict[str, tuple[str | None, str | None]]:
    if not ids:
        return {}
    found = session.execute(
        select(Email.conversation_id, Email.subject, Email.from_address)
        .where(Email.conversation_id.in_(ids), *conditions)
        .ext(distinct_on(Email.conversation_id))
        .order_by(Email.conversation_id, Email.received_at.desc(), Email.id.desc())
    ).all()
    return {str(row[0]): (row[1], row[2]) for row in found}


def thread_emails(
    session: Session,
    conversation_id: str,
    *,
    visible: ColumnElement[bool] | None,
    cursor: tuple[datetime, int] | None,
    limit: int,
) -> tuple[list[Email], str | None]:
    """A page of the thread's emails, oldest first, with their attachments."""
    stmt = (
        select(Email)
        .options(selectinload(Email.attachments))
        .where(Email.conversation_id == conversation_id)
    )
    if visible is not None:
        stmt = stmt.where(visible)
    if cursor is not None:
        stmt = stmt.where(tuple_(Email.received_at, Email.id) > tuple_(*cursor))
    found = list(session.scalars(stmt.order_by(Email.received_at, Email.id).limit(limit + 1)).all())
    page = found[:limit]
    more = len(found) > limit
    return page, encode_cursor(page[-1].received_at, page[-1].id) if more else None


def thread_totals(
    session: Session, conversation_id: str, visible: ColumnElement[bool] | None
) -> tuple[int, datetime | None]:
    """How many emails the caller sees in the thread, and when the last one arrived."""
    stmt = select(func.count(), func.max(Email.received_at)).where(
        Email.conversation_id == conversation_id
    )
    if visible is not None:
        stmt = stmt.where(visible)
    count, last = session.execute(stmt).one()
    return int(count), last


MAX_PARTICIPANT_EMAILS = 1000


def participants(
    session: Session, conversation_id: str, visible: ColumnElement[bool] | None
) -> list[dict[str, str | None]]:
    """Every From, To and Cc address of the thread's (visible) emails, once each, in the
    order first seen; read from at most the first ``MAX_PARTICIPANT_EMAILS`` emails."""
    stmt = select(Email.from_address, Email.from_name, Email.to, Email.cc).where(
        Email.conversation_id == conversation_id
    )
    if visible is not None:
        stmt = stmt.where(visible)
    seen: dict[str, dict[str, str | None]] = {}
    ordered = stmt.order_by(Email.received_at, Email.id).limit(MAX_PARTICIPANT_EMAILS)
    for from_address, from_name, to, cc in session.execute(ordered):
        people = [{"address": from_address, "name": from_name}, *(to or []), *(cc or [])]
        for person in people:
            address = person.get("address") if isinstance(person, dict) else None
            if isinstance(address, str) and address.lower() not in seen:
                seen[address.lower()] = {"address": address, "name": person.get("name")}
    return list(seen.values())
