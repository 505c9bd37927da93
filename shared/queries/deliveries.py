"""Deliveries: one by id, its events, and how its events turned out."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Delivery, DeliveryEvent


def get_delivery(session: Session, delivery_id: str) -> Delivery | None:
    return session.get(Delivery, delivery_id)


def delivery_events(session: Session, delivery_id: str) -> list[DeliveryEvent]:
    return list(
        session.scalars(
            select(DeliveryEvent)
            .where(DeliveryEvent.delivery_id == delivery_id)
            .order_by(DeliveryEvent.index)
        )
    )


def outcome_counts(session: Session, delivery_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per delivery, its count of events by outcome (stored, duplicate, failed…), in one
    query; a delivery without events maps to ``{}``."""
    counts: dict[str, dict[str, int]] = {delivery_id: {} for delivery_id in delivery_ids}
    if not delivery_ids:
        return counts
    rows = session.execute(
        select(DeliveryEvent.delivery_id, DeliveryEvent.outcome, func.count())
        .where(DeliveryEvent.delivery_id.in_(delivery_ids))
        .group_by(DeliveryEvent.delivery_id, DeliveryEvent.outcome)
    ).all()
    for delivery_id, outcome, count in rows:
        counts[delivery_id][outcome] = count
    return counts
