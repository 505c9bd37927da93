"""``email.text_ready``: an email whose attachments' text has all become final.

Each attachment row records the transaction that gave it its final text status
(``attachments.text_position``, set by worker/text/service.py in that UPDATE). An
email's event is at the largest of its rows' positions, and is sent once none of its
rows is pending and that position is below the horizon (every transaction under it has
ended, api/stream/feed.py). A conversion that finishes later can only have a larger
transaction id, so the set of events under the horizon never changes behind a reader:
no gap, no repeat. Two conversions of one email's attachments, committing in either
order, need no lock between them: whichever commits last sets the largest position.
(``kave reprocess --text`` makes rows pending again; their new conversion gives the
email a later ``email.text_ready``.)

The positions are read from the attachment rows after the cursor, at most ``WINDOW``
of them a poll (:func:`bound`), so a stream resumed far back reads its way forward in
bounded steps rather than aggregating everything since.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select, tuple_
from sqlalchemy.orm import Session

from api.stream.position import RECEIVED, TEXT_READY, Position
from shared.contract import attachment_text_url
from shared.models import Attachment, Email

WINDOW = 2000
_PENDING = "pending"


def bound(session: Session, after_position: int, below: int) -> int:
    """How far (exclusive) this poll reads: the horizon, or nearer when more than
    ``WINDOW`` attachment rows became final since ``after_position``. Never at or below
    ``after_position`` + 1, so one transaction's rows are always read whole."""
    edge = session.scalar(
        select(Attachment.text_position)
        .where(Attachment.text_position >= after_position, Attachment.text_position < below)
        .order_by(Attachment.text_position)
        .offset(WINDOW)
        .limit(1)
    )
    if edge is None:
        return below
    return min(below, max(int(edge), after_position + 1))


def next_ready(
    session: Session,
    after: Position,
    conditions: list[ColumnElement[bool]],
    below: int,
    limit: int,
) -> list[tuple[Position, dict[str, Any]]]:
    """The next ``email.text_ready`` events after ``after`` under ``below``."""
    recent = select(Attachment.email_id).where(
        Attachment.text_position >= after.position, Attachment.text_position < below
    )
    per_email = (
        select(Attachment.email_id, func.max(Attachment.text_position).label("position"))
        .where(Attachment.email_id.in_(recent))
        .group_by(Attachment.email_id)
        .having(
            func.count().filter(Attachment.text_status == _PENDING) == 0,
            func.max(Attachment.text_position) < below,
        )
        .subquery()
    )
    # (position, id, text_ready) > (p, e, k): past (p, e) or at it when k was received.
    cursor = tuple_(per_email.c.position, Email.id)
    mark = tuple_(after.position, after.email_id)
    past = cursor >= mark if after.kind == RECEIVED else cursor > mark
    rows = session.execute(
        select(
            per_email.c.position,
            Email.id,
            Email.conversation_id,
            Email.envelope_recipient,
            Email.mailbox_hash,
        )
        .join(Email, Email.id == per_email.c.email_id)
        .where(past, *conditions)
        .order_by(per_email.c.position, Email.id)
        .limit(limit)
    ).all()
    files = _attachments(session, [row.id for row in rows])
    return [
        (
            Position(row.position, row.id, TEXT_READY),
            {
                "type": "email.text_ready",
                "email_id": row.id,
                "conversation_id": row.conversation_id,
                "envelope_recipient": row.envelope_recipient,
                "mailbox_hash": row.mailbox_hash,
                "attachments": files.get(row.id, []),
            },
        )
        for row in rows
    ]


def _attachments(session: Session, email_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each email's attachments with their text status and where to read the text."""
    if not email_ids:
        return {}
    found: dict[int, list[dict[str, Any]]] = {}
    for row in session.execute(
        select(
            Attachment.email_id,
            Attachment.id,
            Attachment.filename,
            Attachment.text_status,
            Attachment.text_characters,
            Attachment.scan_status,
        )
        .where(Attachment.email_id.in_(email_ids))
        .order_by(Attachment.email_id, Attachment.position)
    ):
        found.setdefault(row.email_id, []).append(
            {
                "id": row.id,
                "filename": row.filename,
                "text_status": row.text_status,
                "text_characters": row.text_characters,
                "text_url": attachment_text_url(row.id, row.text_status, row.scan_status),
            }
        )
    return found
