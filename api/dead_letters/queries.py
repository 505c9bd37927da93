"""Paging and discarding dead letters; the filters and the discard itself are shared
with the CLI (shared/queries/dead_letters.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session, defer

from api.pagination import Cursor, Page, paginate
from shared.models import DeadLetter
from shared.queries.dead_letters import DeadLetterFilters, discard_open, select_dead_letters


def list_dead_letters(
    session: Session, filters: DeadLetterFilters, *, cursor: Cursor | None, limit: int
) -> Page[DeadLetter]:
    stmt = select_dead_letters(filters).options(defer(DeadLetter.traceback))
    return paginate(
        session, stmt, DeadLetter.first_seen_at, DeadLetter.id, cursor=cursor, limit=limit
    )


def discard_dead_letter(session: Session, dead_letter_id: int) -> DeadLetter | None:
    """Mark an *open* dead letter discarded; ``None`` when it is missing or not open."""
    discarded = discard_open(session, [dead_letter_id])
    session.commit()
    return discarded[0] if discarded else None
