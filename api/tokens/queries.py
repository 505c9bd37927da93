"""The users tokens are issued to."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import User


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_name(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).one_or_none()
