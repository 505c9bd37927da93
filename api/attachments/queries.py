"""Attachments by id."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.models import Attachment


def get_attachment(session: Session, attachment_id: int) -> Attachment | None:
    return session.get(Attachment, attachment_id)
