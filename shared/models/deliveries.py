"""What the receiver accepted and what became of each event in it: deliveries, their
per-event outcomes and the dead letters an operator replays or discards."""

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
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base


class DeliveryStatus:
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"


class EventOutcome:
    STORED = "stored"  # a new email or event row
    DUPLICATE = "duplicate"  # the same email or event was already stored
    FAILED = "failed"  # could not be processed: a dead letter says why
    ERASED = "erased"  # its email or event was erased on request (kave erase)


class DeadLetterStatus:
    OPEN = "open"  # waiting for a fix and a replay, or a discard
    REPLAYED = "replayed"  # replayed successfully; the event now has a result
    DISCARDED = "discarded"  # an operator decided it needs no result


class Delivery(Base):
    """One webhook POST that the receiver accepted (answered 200)."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str] = mapped_column(String(128))
    body_sha256: Mapped[str] = mapped_column(String(64))
    body_size: Mapped[int] = mapped_column(BigInteger)
    archive_key: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.RECEIVED)
    event_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When a worker last started on it: reconciliation re-enqueues unfinished deliveries
    # only once this is old enough, so a delivery in retry backoff is left alone.
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when retention or an erasure removed the raw archive: the delivery can no
    # longer be reprocessed or replayed, and the audit does not look for its object.
    archive_removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archive_removed_reason: Mapped[str | None] = mapped_column(String(16))

    events: Mapped[list[DeliveryEvent]] = relationship(back_populates="delivery")

    # The deliveries list, newest first, with or without its status filter; the status
    # one also serves the unfinished-delivery gauge and reconciliation.
    __table_args__ = (
        Index("ix_deliveries_received", "received_at", "id"),
        Index("ix_deliveries_status_received", "status", "received_at", "id"),
    )


class DeliveryEvent(Base):
    """The outcome of one event of a delivery's batch, recorded exactly once."""

    __tablename__ = "delivery_events"
    __table_args__ = (UniqueConstraint("delivery_id", "index"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    email_id: Mapped[int | None] = mapped_column(ForeignKey("emails.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    delivery: Mapped[Delivery] = relationship(back_populates="events")


class DeadLetter(Base):
    """An event (or a whole delivery, ``event_index`` NULL) that could not be processed.

    The payload itself stays in the delivery archive; this row only says what failed and
    why, so it can be listed, fixed, replayed or discarded without reading code.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("delivery_id", "event_index", postgresql_nulls_not_distinct=True),
        # The dead-letter list, newest first, with or without its status filter.
        Index("ix_dead_letters_first_seen", "first_seen_at", "id"),
        Index("ix_dead_letters_status_first_seen", "status", "first_seen_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    event_index: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str | None] = mapped_column(String(64), index=True)
    error_class: Mapped[str] = mapped_column(String(128), index=True)
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=DeadLetterStatus.OPEN)
    first_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
