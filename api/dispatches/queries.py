"""Reading the dispatches (hand-off outbox rows) of an email."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from shared.models import Dispatch, Email


def email_exists(session: Session, email_id: int) -> bool:
    return bool(session.scalar(select(exists().where(Email.id == email_id))))


def dispatches_of(session: Session, email_id: int) -> list[Dispatch]:
    return list(
        session.scalars(select(Dispatch).where(Dispatch.email_id == email_id).order_by(Dispatch.id))
    )
