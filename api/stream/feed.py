"""The feed: stored emails in the order of the transactions that inserted them, each sent
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

An event id is ``<position>-<email id>``; it is what ``Last-Event-ID`` sends back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select, text, tuple_
from sqlalchemy.orm import Session

from shared.models import Email

MAX_ID = 2**63 - 1
BATCH = 200
_EVENT_ID = re.compile(r"^(\d{1,19})-(\d{1,19})$")
_HORIZON = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


class BadEventIdError(ValueError):
    """Not an event id of this feed."""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    position: int
    email_id: int

    def event_id(self) -> str:
        return f"{self.position}-{self.email_id}"

    @classmethod
    def parse(cls, value: str) -> Position:
        match = _EVENT_ID.match(value.strip())
        if not match or int(match.group(1)) > MAX_ID or int(match.group(2)) > MAX_ID:
            raise BadEventIdError(
                f"Last-Event-ID {value[:40]!r} is not an id this stream sent ('<n>-<n>')"
            )
        return cls(int(match.group(1)), int(match.group(2)))


def horizon(session: Session) -> int:
    """Transaction ids below this have all finished."""
    return int(session.execute(_HORIZON).scalar_one())


def start(session: Session) -> Position:
    """Where a stream without Last-Event-ID starts: after everything already final."""
    return Position(horizon(session) - 1, MAX_ID)


@dataclass(frozen=True, slots=True)
class Batch:
    """The next emails to send, and where the stream stands once they are sent: past
    every final row when the batch is not full (rows the filters leave out included, so
    a stream narrowed to a quiet mailbox does not scan a busy one's rows again)."""

    emails: list[tuple[Position, dict[str, Any]]]
    reached: Position


def next_batch(session: Session, after: Position, conditions: list[ColumnElement[bool]]) -> Batch:
    emails = next_emails(session, after, conditions, below := horizon(session))
    if len(emails) == BATCH:
        return Batch(emails, emails[-1][0])
    # Every row below the horizon that matches was returned; none can appear there later.
    last = emails[-1][0] if emails else after
    return Batch(emails, max(last, Position(below - 1, MAX_ID)))


def next_emails(
    session: Session, after: Position, conditions: list[ColumnElement[bool]], below: int
) -> list[tuple[Position, dict[str, Any]]]:
    """The next final emails after ``after`` (at most ``BATCH``), with their event data."""
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
        )
        .where(
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
