"""The dispatcher: publish pending outbox rows to the platform's handlers.

Role: for one ``dispatches`` row, claim it, hand the email to its route's handler, and
record the attempt (count, HTTP answer code, error class). At-least-once, safely:

- **claim**: an UPDATE that only succeeds on a pending row that is due, and pushes its
  ``next_attempt_at`` a lease into the future. Two publishers of the same row (a retry and
  the sweep, or a task redelivered after a crash) cannot both hand it off; a publisher
  killed mid-attempt leaves the row pending, and the sweep takes it again once the lease
  expires. A new email's row is usually claimed by its INSERT instead, and handed off by
  the worker that stored it right after the commit (``hand_off_new``,
  ``worker.handoff.inline``);
- **hand-off**: a Celery handler gets a task by name on the platform's queue, with ids
  and the idempotency key only (Flower and logs show nothing else); an HTTP handler gets
  a JSON POST signed the Standard Webhooks way (``webhook-id`` = the idempotency key,
  ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>``) with a timeout and
  no redirects; a 2xx answer is success;
- **record**: success ends the row (``delivered``); a failure is retried with exponential
  backoff and jitter until ``KAVE_HANDOFF_MAX_ATTEMPTS``, then the row is ``dead`` and a
  dead letter (kind ``dispatch``, ``event_index`` = minus the dispatch id, so it never
  collides with an event's) says why. Replaying it resets the row and publishes it again.
  Only the attempt that holds the row records: one that outlived its lease finds the row
  claimed again and its outcome is ``superseded``.

Handlers must be idempotent by the key: a handler that answers 2xx but whose answer is
lost, or a dispatcher killed after the POST, means the same key arrives twice.
"""

from __future__ import annotations

import time
from datetime import timedelta

import structlog
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from shared.models import (
    Dispatch,
    DispatchStatus,
    Email,
)
from worker.handoff import inline as handoff_inline
from worker.handoff.attempt import (
    Attempt,
    Claimed,
    DispatchContext,
    after_record,
    record_attempt,
)
from worker.handoff.document import document
from worker.handoff.http import post_signed, webhook_body
from worker.handoff.outbox import NewDispatch
from worker.handoff.routes import CeleryHandler, Route
from worker.interrupts import INTERRUPTS

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500


# --------------------------------------------------------------------------- publishing


def publish(ctx: DispatchContext, dispatch_id: int) -> str:
    """One attempt at one dispatch; returns the outcome (``skipped`` if not claimable).

    The claim commits before the hand-off (an HTTP handler may take its whole timeout):
    the lease, not a held lock, keeps other publishers off the row meanwhile.
    """
    with ctx.session_factory() as session, session.begin():
        claimed = _claim(
            session,
            ctx,
            Dispatch.id == dispatch_id,
            # A second of slack: a countdown task may fire a hair before the row is due.
            Dispatch.next_attempt_at <= func.now() + timedelta(seconds=1),
        )
    if not claimed:
        return "skipped"
    with ctx.session_factory() as session:
        tried = _hand_off_outcome(ctx, claimed[0], session)
        outcome, delay = record_attempt(session, ctx, tried)
        session.commit()
    after_record(ctx, tried, outcome, delay)
    return outcome


def hand_off_new(ctx: DispatchContext, new: list[NewDispatch]) -> None:
    """After the commit that stored their emails: hand a delivery's new dispatches over.

    ``inline`` rows were claimed by their INSERT: each is handed off here, then all
    outcomes are recorded in one transaction. A route that pauses meanwhile (its handler
    slow or unreachable, ``worker.handoff.inline``) gets its remaining rows back, due, and
    a task each, like the rows inserted while it was paused. If this process dies before
    the record commits, the leases run out and the sweep hands the rows over again (the
    same keys: handlers drop repeats).
    """
    tried: list[Attempt] = []
    released: list[int] = []
    done: list[tuple[Attempt, str, float]] = []
    queued = [row.id for row in new if not row.inline]
    # One session for the bodies and the records: one connection checkout, one commit.
    with ctx.session_factory() as session:
        for row in new:
            if not row.inline:
                continue
            if not handoff_inline.takes_inline(row.route):
                released.append(row.id)
                continue
            claimed = Claimed(
                row.id,
                row.email_id,
                row.route,
                row.key,
                1,
                row.delivery_id,
                failed_before=False,
                fields=row.fields,
            )
            started = time.monotonic()
            attempt = _hand_off_outcome(ctx, claimed, session)
            handoff_inline.observed(row.route, time.monotonic() - started, raised=attempt.raised)
            tried.append(attempt)
        if tried or released:
            done = [(attempt, *record_attempt(session, ctx, attempt)) for attempt in tried]
            if released:
                _release(session, released)
            session.commit()
    for attempt, outcome, delay in done:
        after_record(ctx, attempt, outcome, delay)
    for dispatch_id in [*queued, *released]:
        ctx.schedule(dispatch_id, 0.0)


def _release(session: Session, dispatch_ids: list[int]) -> None:
    """Give back claims taken by an INSERT and never attempted: due now, no attempt spent."""
    session.connection().execute(
        update(Dispatch)
        .where(
            Dispatch.id.in_(dispatch_ids),
            Dispatch.status == DispatchStatus.PENDING,
            Dispatch.attempts == 1,
        )
        .values(attempts=0, next_attempt_at=func.now(), updated_at=func.now())
    )


def _hand_off_outcome(ctx: DispatchContext, claimed: Claimed, session: Session) -> Attempt:
    """Hand a claimed dispatch to its handler; what came of it (not yet recorded).

    ``session`` reads an HTTP handler's body; the caller records the outcome with it.
    """
    route = ctx.routes.route(claimed.route) if claimed.route else None
    if route is None:
        return Attempt(claimed, None, None, "route_removed")  # nothing to retry
    try:
        code = _hand_off(ctx, claimed, route, session)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception as exc:  # a handler down, a timeout, a broker error
        return Attempt(claimed, route, None, type(exc).__name__, raised=True)
    failed = code is not None and not 200 <= code < 300
    return Attempt(claimed, route, code, f"http_{code}" if failed else None)


def _claim(session: Session, ctx: DispatchContext, *where: ColumnElement[bool]) -> list[Claimed]:
    """Claim the pending dispatches that match ``where``, in one statement: each one's
    attempt is counted and its ``next_attempt_at`` pushed a lease into the future, so no
    other publisher can claim it until this one records the outcome or the lease expires."""
    lease = timedelta(seconds=handoff_inline.lease_seconds(ctx.routes))
    # On the connection, not session.execute: there are no ORM objects to synchronise, and
    # the ORM's UPDATE path costs more CPU than the statement itself.
    connection = session.connection()
    rows = connection.execute(
        update(Dispatch)
        .where(Dispatch.email_id == Email.id, Dispatch.status == DispatchStatus.PENDING, *where)
        .values(
            attempts=Dispatch.attempts + 1,
            next_attempt_at=func.now() + lease,
            updated_at=func.now(),
        )
        .returning(
            Dispatch.id,
            Dispatch.email_id,
            Dispatch.route,
            Dispatch.idempotency_key,
            Dispatch.attempts,
            Dispatch.last_error,  # not set by this UPDATE: the previous attempt's
            # The delivery names the dead letter, if it comes to that: same round trip.
            Email.delivery_id,
        )
    ).all()
    return [
        Claimed(
            row.id,
            row.email_id,
            row.route,
            row.idempotency_key,
            row.attempts,
            str(row.delivery_id),
            failed_before=row.last_error is not None,
        )
        for row in rows
    ]


def _hand_off(ctx: DispatchContext, claimed: Claimed, route: Route, session: Session) -> int | None:
    if isinstance(route.handler, CeleryHandler):
        target = route.handler.celery
        # Ids and the key only: the handler reads the email through the API or the database.
        ctx.send_task(
            target.task,
            {
                "email_id": claimed.email_id,
                "dispatch_id": claimed.id,
                "idempotency_key": claimed.key,
                "route": route.name,
            },
            target.queue,
        )
        return None
    body = (
        document(claimed.fields, claimed.id, claimed.key, route.name)
        if claimed.fields is not None
        else webhook_body(session, claimed, route.name)
    )
    return post_signed(route.handler.http, claimed.key, body)


# --------------------------------------------------------------------------- finding work


def due_dispatches(session: Session, limit: int = SWEEP_BATCH) -> list[int]:
    """Pending rows that are due: new ones whose publish was lost, expired leases, retries."""
    return list(
        session.scalars(
            select(Dispatch.id)
            .where(
                Dispatch.status == DispatchStatus.PENDING, Dispatch.next_attempt_at <= func.now()
            )
            .order_by(Dispatch.next_attempt_at)
            .limit(limit)
        )
    )


def reset_for_replay(session: Session, dispatch_id: int) -> bool:
    """Make a dead dispatch pending again with a fresh budget; False if it is not dead."""
    found = session.execute(
        update(Dispatch)
        .where(Dispatch.id == dispatch_id, Dispatch.status == DispatchStatus.DEAD)
        .values(
            status=DispatchStatus.PENDING,
            attempts=0,
            next_attempt_at=func.now(),
            updated_at=func.now(),
        )
        .returning(Dispatch.id)
    ).one_or_none()
    return found is not None


def replay(ctx: DispatchContext, dispatch_id: int) -> str:
    """Give a dead dispatch a fresh budget and make one attempt now (retries follow)."""
    with ctx.session_factory() as session, session.begin():
        if not reset_for_replay(session, dispatch_id):
            return "not_dead"
    log.info("dispatch.replayed", dispatch_id=dispatch_id)
    return publish(ctx, dispatch_id)


def dead_dispatch_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Dispatch.id).where(Dispatch.status == DispatchStatus.DEAD)))
