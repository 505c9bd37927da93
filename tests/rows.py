"""Rows a test needs in place: a stored email and the delivery that brought it.

For tests of what happens after ingest (metrics, the hand-off's claims) that need an
email row without running the parser and the object store.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from shared.models import Delivery, Email


def add_stored_email(
    session: Session,
    *,
    received_at: datetime | None = None,
    envelope_recipient: str | None = None,
) -> Email:
    """Add a processed delivery and one email of it (flushed: the email has its id)."""
    received_at = received_at or datetime.now(UTC)
    delivery = Delivery(
        id=str(uuid.uuid4()),
        received_at=received_at,
        request_id="req",
        body_sha256="0" * 64,
        body_size=1,
        archive_key="deliveries/00/x",
        status="processed",
    )
    session.add(delivery)
    session.flush()
    email = Email(
        dedup_key=uuid.uuid4().hex,
        raw_sha256="0" * 64,
        raw_size=1,
        raw_key="raw/x",
        envelope_recipient=envelope_recipient,
        delivery_id=delivery.id,
        received_at=received_at,
    )
    session.add(email)
    session.flush()
    return email
