"""Dead letters: the one place that opens (or re-opens) and resolves them."""

from __future__ import annotations

from sqlalchemy import (
    func,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import (
    DeadLetter,
    DeadLetterStatus,
)
from worker.ingest.columns import (
    ERROR_CLASS_CHARS,
    KIND_CHARS,
    without_nul,
)


def record_dead_letter(
    session: Session,
    delivery_id: str,
    event_index: int | None,
    *,
    kind: str | None,
    error_class: str,
    message: str,
    traceback: str | None,
) -> None:
    """Open (or re-open, counting the attempt) the dead letter of an event or delivery."""
    values = {
        "error_class": error_class[:ERROR_CLASS_CHARS],
        "message": without_nul(message),
        "traceback": without_nul(traceback),
        "kind": without_nul(kind)[:KIND_CHARS] if kind else None,
    }
    session.execute(
        insert(DeadLetter)
        .values(delivery_id=delivery_id, event_index=event_index, attempts=1, **values)
        .on_conflict_do_update(
            constraint="uq_dead_letters_delivery_id",
            set_={
                **values,
                "attempts": DeadLetter.attempts + 1,
                "last_seen_at": func.now(),
                "status": DeadLetterStatus.OPEN,
                "resolved_at": None,
            },
        )
    )


def resolve_dead_letter(session: Session, delivery_id: str, event_index: int | None) -> None:
    """The event (or delivery) now has a result: its open dead letter is replayed."""
    index_matches = (
        DeadLetter.event_index.is_(None)
        if event_index is None
        else DeadLetter.event_index == event_index
    )
    session.execute(
        update(DeadLetter)
        .where(
            DeadLetter.delivery_id == delivery_id,
            index_matches,
            DeadLetter.status == DeadLetterStatus.OPEN,
        )
        .values(status=DeadLetterStatus.REPLAYED, resolved_at=func.now())
    )
