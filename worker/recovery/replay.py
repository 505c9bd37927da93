"""Replaying dead letters: process the event (or delivery) again from the archive.

Replays are safe: a replayed event goes through the same idempotent writes as the first
attempt, so an email that meanwhile arrived in another batch is found, not duplicated.
A delivery whose archive was erased (or removed by retention) is refused with
:class:`~shared.lifecycle.erased.ArchiveRemovedError`, before anything is read or written.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select

from shared.lifecycle.erased import ArchiveRemovedError, check_processable, refusal
from shared.models import DeadLetter, DeadLetterStatus, Delivery, EventOutcome
from worker.errors import PermanentDeliveryError
from worker.handoff.attempt import DispatchContext
from worker.handoff.dispatch import replay as replay_dispatch
from worker.ingest.batch import dead_letter_delivery, process_delivery, read_event
from worker.ingest.commit import process_event
from worker.ingest.context import IngestContext, envelope_for
from worker.ingest.parsing import BatchError

log = structlog.get_logger(__name__)

NOT_OPEN = "not_open"


def replay_dead_letter(
    ctx: IngestContext, dead_letter_id: int, *, handoff: DispatchContext | None
) -> str:
    """Replay one open dead letter; returns the new outcome (or ``not_open``). Raises
    :class:`ArchiveRemovedError` when its delivery's archive was erased or removed.
    ``handoff``: the dispatcher that replays a dead dispatch (None: the hand-off is off)."""
    with ctx.session_factory() as session:
        row = session.execute(
            select(DeadLetter, Delivery)
            .join(Delivery, Delivery.id == DeadLetter.delivery_id)
            .where(DeadLetter.id == dead_letter_id)
        ).one_or_none()
    if row is None:
        raise LookupError(f"no dead letter {dead_letter_id}")
    dead_letter, delivery = row
    dispatch = dead_letter.kind == "dispatch" and (dead_letter.event_index or 0) < 0
    # Before the status: an erasure discards the dead letters it makes unreplayable, and
    # "erased" is the answer the operator needs, not "not open".
    refused = None if dispatch else refusal(delivery, "replayed")
    if refused is not None:
        raise ArchiveRemovedError(refused)
    if dead_letter.status != DeadLetterStatus.OPEN:
        return NOT_OPEN
    if dispatch:
        # Hand-off: a dispatch's dead letter replays the dispatch (its
        # event_index is minus the dispatch id); delivered, it resolves the dead letter.
        if handoff is None:
            raise LookupError("the hand-off is off (no KAVE_HANDOFF_ROUTES_FILE)")
        return replay_dispatch(handoff, -(dead_letter.event_index or 0))
    envelope = envelope_for(delivery)
    structlog.contextvars.bind_contextvars(delivery_id=delivery.id)
    if dead_letter.event_index is None:
        result = process_delivery(ctx, envelope, replaying=True)
        with ctx.session_factory() as session:
            still_open = session.scalar(
                select(DeadLetter.status).where(DeadLetter.id == dead_letter_id)
            )
        return (
            EventOutcome.FAILED
            if still_open == DeadLetterStatus.OPEN
            else (f"processed {result.event_count} events")
        )
    try:
        event = read_event(ctx, envelope, dead_letter.event_index)
    except (PermanentDeliveryError, BatchError) as exc:
        # An erasure that ran since the check above took the archive: say so, record nothing.
        check_processable(ctx.session_factory, delivery.id, "replayed")
        dead_letter_delivery(ctx, envelope, "unreadable", exc)
        return EventOutcome.FAILED
    return process_event(ctx, delivery.id, dead_letter.event_index, event, replaying=True)
