"""Listing tracking and sync events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.filters import lower_equals
from api.pagination import Cursor, Page, paginate
from shared.models import Event


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
        stmt = stmt.where(lower_equals(Event.recipient, filters.recipient))
    if filters.since is not None:
        stmt = stmt.where(Event.occurred_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Event.occurred_at < filters.until)
    return paginate(session, stmt, Event.created_at, Event.id, cursor=cursor, limit=limit)
