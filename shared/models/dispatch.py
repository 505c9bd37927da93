"""The hand-off outbox: one row per email and matching route."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base


class DispatchStatus:
    PENDING = "pending"  # waiting for (another) publishing attempt
    DELIVERED = "delivered"  # the handler took it: HTTP 2xx, or the Celery task published
    DEAD = "dead"  # out of attempts: a dead letter (kind "dispatch") says why; replayable
    UNROUTED = "unrouted"  # no route matched: recorded, never retried
    # A route with ``after: text``: waits until every attachment's text status is final,
    # then becomes pending (worker.handoff.held), once.
    HELD = "held"


class Dispatch(Base):
    """The hand-off of one email to one route's handler (a transactional outbox row).

    Written in the transaction that stores the email, so a stored email always has its
    dispatch; the dispatcher publishes pending rows and records each attempt.
    ``idempotency_key`` (sha256 of the email's dedup key and the route name) is stable
    across replays: handlers drop repeats by it (it is the ``webhook-id`` header).
    """

    __tablename__ = "dispatches"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"), index=True)
    route: Mapped[str | None] = mapped_column(String(64), index=True)  # None: unrouted
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=DispatchStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_status_code: Mapped[int | None] = mapped_column(Integer)  # the handler's HTTP answer
    last_error: Mapped[str | None] = mapped_column(Text)  # an error class, never a payload
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_dispatches_due", "status", "next_attempt_at"),)
