"""The delivery row (its attempts and its end) and the outcome row of each of its events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    bindparam,
    func,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.orm import Session

from shared.contract import Envelope
from shared.lifecycle.erased import ERASURE
from shared.models import (
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventOutcome,
)
from worker.ingest.columns import (
    KIND_CHARS,
    without_nul,
)

# The statements of an email's transaction are built once and run on the session's
# connection: SQLAlchemy memoises a statement's cache key on the object, so a statement
# reused with new parameters skips its construction, the coercion of each value and its
# key (a large share of a short statement's CPU), and the connection skips the ORM's
# bulk-insert path (see also worker.handoff.outbox).
DELIVERY_COLUMNS = (
    "id",
    "received_at",
    "request_id",
    "body_sha256",
    "body_size",
    "archive_key",
    "status",
    "event_count",
    "handled_at",
)
_DELIVERY_VALUES: dict[str, Any] = {name: bindparam(name) for name in DELIVERY_COLUMNS}
_ENSURE_DELIVERY = (
    insert(Delivery)
    .values(**_DELIVERY_VALUES, attempts=0)
    .on_conflict_do_nothing(index_elements=[Delivery.id])
)


def constant(value: str | int) -> ColumnElement[Any]:
    """A constant written into a statement's text, not sent as a parameter: psycopg
    caches the parsing of a statement only up to 50 parameters (and 4,096 characters),
    which the statement of an email's rows keeps within (tests/worker/test_email_rows.py).
    Only Kave's own constants (words and numbers) go here."""
    if isinstance(value, int):
        return literal_column(str(int(value)))
    if not value.replace("_", "").isalnum():
        raise ValueError(f"not a constant word: {value!r}")
    return literal_column(f"'{value}'")


# An erasure ends an unfinished delivery (failed, with a dead letter for what it could not
# store); an attempt that was already under way when it committed must not record itself
# over that end, or the delivery would end twice.
NOT_ERASED = Delivery.archive_removed_reason.is_distinct_from(ERASURE)


def attempt_upsert(values: dict[str, Any], *, finish: bool, guarded: bool = True) -> Insert:
    """Record an attempt at a delivery, creating its row on the first one; with
    ``finish``, also its end (a single-event delivery records both in one statement).
    ``guarded``: not over an erasure's end (:data:`NOT_ERASED`)."""
    one = constant(1)
    statement = insert(Delivery).values(**values, attempts=one, last_attempt_at=func.now())
    counted: dict[str, Any] = {"attempts": Delivery.attempts + one, "last_attempt_at": func.now()}
    if finish:
        counted.update(
            status=statement.excluded.status,
            event_count=statement.excluded.event_count,
            error=null(),
            handled_at=statement.excluded.handled_at,
        )
    return statement.on_conflict_do_update(
        index_elements=[Delivery.id], set_=counted, where=NOT_ERASED if guarded else None
    )


_RECORD_ATTEMPT = attempt_upsert(_DELIVERY_VALUES, finish=False)
_RECORD_ATTEMPT_AND_FINISH = attempt_upsert(_DELIVERY_VALUES, finish=True)
_FINISH_DELIVERY = (
    update(Delivery)
    .where(Delivery.id == bindparam("delivery_id"), NOT_ERASED)
    .values(
        status=bindparam("status"),
        event_count=bindparam("event_count"),
        error=bindparam("error"),
        handled_at=bindparam("handled_at"),
    )
)
_FINISHED_INDEXES = select(DeliveryEvent.index).where(
    DeliveryEvent.delivery_id == bindparam("delivery_id")
)


def _delivery_row(envelope: Envelope, archive_key: str) -> dict[str, Any]:
    return {
        "id": envelope.delivery_id,
        "received_at": datetime.fromisoformat(envelope.received_at),
        "request_id": envelope.request_id,
        "body_sha256": envelope.body_sha256,
        "body_size": envelope.body_size,
        "archive_key": archive_key,
        "status": DeliveryStatus.RECEIVED,
        "event_count": None,
        "handled_at": None,
    }


def ensure_delivery(session: Session, envelope: Envelope, archive_key: str) -> None:
    """The delivery row exists (without counting an attempt)."""
    session.connection().execute(_ENSURE_DELIVERY, _delivery_row(envelope, archive_key))


@dataclass(frozen=True)
class DeliveryAttempt:
    """An attempt at a delivery to record (creating its row on the first one), and its
    end (processed, with that many events) when ``finish_with_events`` is set."""

    envelope: Envelope
    archive_key: str
    finish_with_events: int | None = None

    def row(self) -> dict[str, Any]:
        row = _delivery_row(self.envelope, self.archive_key)
        if self.finish_with_events is not None:
            row.update(
                status=DeliveryStatus.PROCESSED,
                event_count=self.finish_with_events,
                handled_at=datetime.now(UTC),
            )
        return row


def record_delivery(
    session: Session, envelope: Envelope, archive_key: str, *, finish_with_events: int | None = None
) -> None:
    """Record an attempt at the delivery, creating its row on the first one; with
    ``finish_with_events``, also its end (processed, with that many events)."""
    attempt = DeliveryAttempt(envelope, archive_key, finish_with_events)
    statement = _RECORD_ATTEMPT if finish_with_events is None else _RECORD_ATTEMPT_AND_FINISH
    session.connection().execute(statement, attempt.row())


def finished_indexes(session: Session, delivery_id: str) -> set[int]:
    rows = session.connection().execute(_FINISHED_INDEXES, {"delivery_id": delivery_id})
    return set(rows.scalars())


def finish_delivery(
    session: Session, delivery_id: str, *, event_count: int | None, error: str | None = None
) -> None:
    session.connection().execute(
        _FINISH_DELIVERY,
        {
            "delivery_id": delivery_id,
            "status": DeliveryStatus.FAILED if error else DeliveryStatus.PROCESSED,
            "event_count": event_count,
            "error": without_nul(error),
            "handled_at": datetime.now(UTC),
        },
    )


_INSERT_OUTCOME = insert(DeliveryEvent).values(
    delivery_id=bindparam("delivery_id"),
    index=bindparam("index"),
    kind=bindparam("kind"),
    outcome=bindparam("outcome"),
    email_id=bindparam("email_id"),
    event_id=bindparam("event_id"),
    error=bindparam("error"),
)


def outcome_overwrite(statement: Insert) -> dict[str, Any]:
    """What a new outcome overwrites of a recorded one: only a failure's (the ``where``
    of each outcome upsert), since a replay may turn a failure into a result and nothing
    ever overwrites a result."""
    return {
        "outcome": statement.excluded.outcome,
        "email_id": statement.excluded.email_id,
        "event_id": statement.excluded.event_id,
        "error": statement.excluded.error,
    }


_RECORD_OUTCOME = _INSERT_OUTCOME.on_conflict_do_update(
    index_elements=[DeliveryEvent.delivery_id, DeliveryEvent.index],
    set_=outcome_overwrite(_INSERT_OUTCOME),
    where=DeliveryEvent.outcome == EventOutcome.FAILED,
)


def record_outcome(
    session: Session,
    delivery_id: str,
    index: int,
    kind: str,
    outcome: str,
    *,
    email_id: int | None = None,
    event_id: int | None = None,
    error: str | None = None,
) -> None:
    session.connection().execute(
        _RECORD_OUTCOME,
        {
            "delivery_id": delivery_id,
            "index": index,
            "kind": without_nul(kind)[:KIND_CHARS],
            "outcome": outcome,
            "email_id": email_id,
            "event_id": event_id,
            "error": without_nul(error),
        },
    )
