"""The feed: ``email.received`` for each stored email and ``email.text_ready`` once its
attachments' text is final, in the order of the transactions that wrote them, each sent
once that transaction has finished, resumable without a gap or a repeat.

Email ids come from a sequence, taken when a row is inserted, not when it commits: a
worker can commit id 11 while id 10's transaction is still open, and a reader that moved
past 11 would never see 10. So each email row carries the id of the transaction that
inserted it (``emails.feed_position``, a column default), and the feed emits only rows
whose transaction id is below the oldest transaction still running
(``pg_snapshot_xmin(pg_current_snapshot())``): every one of those has finished, and no
new one can ever get a smaller id. Read in (position, id) order, a cursor of the last
(position, id) sent misses nothing and repeats nothing. The price: one long transaction
anywhere in the database holds the feed back (delays it, loses nothing) until it ends.

``email.text_ready`` follows the same rule (api/stream/text_ready.py): each attachment
row records the transaction that made its text final (``attachments.text_position``),
and an email's event sits at the largest of them once none is pending. Both kinds are
merged into one order, (position, email id, kind), received before text_ready.

An event id is ``<position>-<email id>`` for ``email.received`` and
``<position>-<email id>-t`` for ``email.text_ready``; it is what ``Last-Event-ID`` sends
back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select, text, tuple_
from sqlalchemy.orm import Session

from api.stream import text_ready
from api.stream.position import BadEventIdError, Position
from shared.models import Attachment, Email

BATCH = 200
_HORIZON = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")

__all__ = ["BATCH", "BadEventIdError", "Batch", "Position", "next_batch", "start"]


def horizon(session: Session) -> int:
    """Transaction ids below this have all finished."""
    return int(session.execute(_HORIZON).scalar_one())


def start(session: Session) -> Position:
    """Where a stream without Last-Event-ID starts: after everything already final."""
    return Position.after_all(horizon(session) - 1)


@dataclass(frozen=True, slots=True)
class Batch:
    """The next events to send, and where the stream stands once they are sent: past
    every final row when the batch is not full (rows the filters leave out included, so
    a stream narrowed to a quiet mailbox does not scan a busy one's rows again)."""

    events: list[tuple[Position, dict[str, Any]]]
    reached: Position


def next_batch(session: Session, after: Position, conditions: list[ColumnElement[bool]]) -> Batch:
    # Everything final is below the horizon; text_ready may read less of it at a time.
    below = text_ready.bound(session, after.position, horizon(session))
    received = next_emails(session, after, conditions, below)
    ready = text_ready.next_ready(session, after, conditions, below, BATCH)
    merged = sorted(received + ready, key=lambda event: event[0])
    if len(received) == BATCH or len(ready) == BATCH:
        # A kind may have more rows after its last one read: stop where both are complete.
        events = merged[:BATCH]
        return Batch(events, events[-1][0])
    # Every row below the bound that matches was returned; none can appear there later.
    last = merged[-1][0] if merged else after
    return Batch(merged, max(last, Position.after_all(below - 1)))


def next_emails(
    session: Session, after: Position, conditions: list[ColumnElement[bool]], below: int
) -> list[tuple[Position, dict[str, Any]]]:
    """The next final emails after ``after`` (at most ``BATCH``), with their event data."""
    # Whether an email.text_ready of this email is (or will be) in the feed: an
    # attachment waits for its text, or was given it by a conversion.
    awaits_text = exists().where(
        Attachment.email_id == Email.id,
        or_(Attachment.text_status == "pending", Attachment.text_position.is_not(None)),
    )
    rows = session.execute(
        select(
            Email.feed_position,
            Email.id,
            Email.conversation_id,
            Email.received_at,
            Email.from_address,
            Email.subject,
            Email.envelope_recipient,
            Email.mailbox_hash,
            awaits_text.label("awaits_text"),
        )
        .where(
            # A received event at (p, e) comes before a text_ready at (p, e).
            tuple_(Email.feed_position, Email.id) > tuple_(after.position, after.email_id),
            Email.feed_position < below,
            *conditions,
        )
        .order_by(Email.feed_position, Email.id)
        .limit(BATCH)
    ).all()
    return [
        (
            Position(row.feed_position, row.id),
            {
                "type": "email.received",
                "email_id": row.id,
                "conversation_id": row.conversation_id,
                "received_at": row.received_at.isoformat(),
                "from_address": row.from_address,
                "subject": row.subject,
                "envelope_recipient": row.envelope_recipient,
                "mailbox_hash": row.mailbox_hash,
                "awaits_text": row.awaits_text,
            },
        )
        for row in rows
    ]


def mailbox_conditions(
    visible: ColumnElement[bool] | None, mailbox: str | None, mailbox_hash: str | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [] if visible is None else [visible]
    if mailbox is not None:
        conditions.append(func.lower(Email.envelope_recipient) == mailbox.lower())
    if mailbox_hash is not None:
        conditions.append(Email.mailbox_hash == mailbox_hash)
    return conditions
