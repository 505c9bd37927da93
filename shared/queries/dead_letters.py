"""Dead letters: which ones match a filter, one by id, and discarding open ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from shared.models import DeadLetter, DeadLetterStatus


@dataclass(frozen=True, slots=True)
class DeadLetterFilters:
    """Every filter set must match; ``None`` leaves a column unfiltered."""

    status: str | None = None
    kind: str | None = None
    error_class: str | None = None
    delivery_id: str | None = None


def select_dead_letters(filters: DeadLetterFilters) -> Select[DeadLetter]:
    """The dead letters matching ``filters``, unordered: callers page or sort."""
    stmt = select(DeadLetter)
    if filters.status is not None:
        stmt = stmt.where(DeadLetter.status == filters.status)
    if filters.kind is not None:
        stmt = stmt.where(DeadLetter.kind == filters.kind)
    if filters.error_class is not None:
        stmt = stmt.where(DeadLetter.error_class == filters.error_class)
    if filters.delivery_id is not None:
        stmt = stmt.where(DeadLetter.delivery_id == filters.delivery_id)
    return stmt


def get_dead_letter(session: Session, dead_letter_id: int) -> DeadLetter | None:
    return session.get(DeadLetter, dead_letter_id)


def discard_open(session: Session, dead_letter_ids: Sequence[int]) -> list[DeadLetter]:
    """Mark those of ``dead_letter_ids`` that are *open* discarded; the ones it marked.

    One conditional UPDATE, so a discard racing a replay cannot overwrite its result.
    The caller commits.
    """
    if not dead_letter_ids:
        return []
    return list(
        session.scalars(
            update(DeadLetter)
            .where(
                DeadLetter.id.in_(list(dead_letter_ids)),
                DeadLetter.status == DeadLetterStatus.OPEN,
            )
            .values(status=DeadLetterStatus.DISCARDED, resolved_at=func.now())
            .returning(DeadLetter)
            .execution_options(synchronize_session=False)
        )
    )
