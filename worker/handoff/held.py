"""Held dispatches: a route with ``after: text`` hands an email off once every attachment's
text status is final.

Its dispatch row is inserted ``held`` with the email (``worker.handoff.outbox``). Whoever
makes an attachment's status final (``worker.text``) calls :func:`release_held` in the same
transaction: the rows of the emails that no longer wait become ``pending`` and due, in one
UPDATE that only a ``held`` row passes, so each is released once; the caller then
schedules them, and a lost schedule is the outbox sweep's (a due pending row). From there
the dispatch is like any other: claimed, handed off exactly once per key.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from shared.models import Attachment, Dispatch, DispatchStatus


def release_held(session: Session, email_ids: Iterable[int] | None = None) -> list[int]:
    """Release the held dispatches of ``email_ids`` (all, when None) whose emails no
    longer have a pending attachment; their ids."""
    waiting = exists().where(
        Attachment.email_id == Dispatch.email_id, Attachment.text_status == "pending"
    )
    statement = (
        update(Dispatch)
        .where(Dispatch.status == DispatchStatus.HELD, ~waiting)
        .values(status=DispatchStatus.PENDING, next_attempt_at=func.now(), updated_at=func.now())
        .returning(Dispatch.id)
    )
    if email_ids is not None:
        wanted = sorted(set(email_ids))
        if not wanted:
            return []
        statement = statement.where(Dispatch.email_id.in_(wanted))
    return list(session.scalars(statement))


def held_email_ids(session: Session, limit: int = 500) -> list[int]:
    """Emails with a held dispatch (the text sweep releases what a crash left behind)."""
    return list(
        session.scalars(
            select(Dispatch.email_id).where(Dispatch.status == DispatchStatus.HELD).limit(limit)
        )
    )
