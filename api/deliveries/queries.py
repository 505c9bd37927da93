"""Listing deliveries; one delivery, its events and outcome counts are shared with the
CLI (shared/queries/deliveries.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.pagination import Cursor, Page, paginate
from shared.models import Delivery
from shared.queries.deliveries import outcome_counts


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
    page: Page[Delivery] = paginate(
        session, stmt, Delivery.received_at, Delivery.id, cursor=cursor, limit=limit
    )
    return page, outcome_counts(session, [delivery.id for delivery in page.rows])
