"""The dispatcher: publish pending outbox rows to the platform's handlers.

Role: for one ``dispatches`` row, claim it, hand the email to its route's handler, and
record the attempt (count, HTTP answer code, error class). At-least-once, safely:

- **claim**: an UPDATE that only succeeds on a pending row that is due, and pushes its
  ``next_attempt_at`` a lease into the future. Two publishers of the same row (a retry and
  the sweep, or a task redelivered after a crash) cannot both hand it off; a publisher
  killed mid-attempt leaves the row pending, and the sweep takes it again once the lease
  expires. A new email's row is usually claimed by its INSERT instead, and handed off by
  the worker that stored it right after the commit (``hand_off_new``,
  ``worker.handoff_inline``);
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

import base64
import hashlib
import hmac
import os
import random
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from itertools import chain
from typing import Any

import structlog
import urllib3
from sqlalchemy import ColumnElement, Interval, bindparam, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningUpdate

from shared.handoff_routes import CeleryHandler, HttpTarget, Route, RouteTable, signing_key
from shared.models import (
    Attachment,
    DeadLetter,
    DeadLetterStatus,
    Dispatch,
    DispatchStatus,
    Email,
)
from worker import handoff_inline, handoff_metrics
from worker.handoff_inline import NewDispatch
from worker.ingest.columns import ERROR_CLASS_CHARS
from worker.ingest.storage.dead_letters import record_dead_letter, resolve_dead_letter
from worker.interrupts import INTERRUPTS
from worker.webhook_document import ATTACHMENT_COLUMNS, BODY_COLUMNS, document

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500

SendTask = Callable[[str, dict[str, Any], str], None]  # task name, kwargs, queue
Schedule = Callable[[int, float], None]  # dispatch id, countdown seconds


@dataclass(frozen=True)
class DispatchContext:
    session_factory: Callable[[], AbstractContextManager[Session]]
    routes: RouteTable
    send_task: SendTask
    schedule: Schedule
    max_attempts: int = 8
    backoff_max_seconds: float = 300.0


@dataclass(frozen=True)
class _Claimed:
    id: int
    email_id: int
    route: str | None
    key: str
    attempts: int
    delivery_id: str
    failed_before: bool  # an earlier attempt failed: a dead letter may exist
    # An inline hand-off's body fields, from the values just inserted (no read needed).
    fields: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class _Attempt:
    claimed: _Claimed
    route: Route | None  # None: the routes file no longer has it
    code: int | None  # the HTTP handler's answer
    error: str | None  # None: handed off
    raised: bool = False  # no answer at all: unreachable, timed out, broker error


def dead_letter_index(dispatch_id: int) -> int:
    """The dead letter's event_index of a dispatch: negative, never an event's index."""
    return -dispatch_id


def backoff_seconds(attempts: int, maximum: float) -> float:
    """Exponential (1, 2, 4 ... s) with full jitter in its upper half, capped."""
    ceiling: float = min(maximum, float(2 ** max(attempts - 1, 0)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


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
        outcome, delay = _record(session, ctx, tried)
        session.commit()
    _recorded(ctx, tried, outcome, delay)
    return outcome


def hand_off_new(ctx: DispatchContext, new: list[NewDispatch]) -> None:
    """After the commit that stored their emails: hand a delivery's new dispatches over.

    ``inline`` rows were claimed by their INSERT: each is handed off here, then all
    outcomes are recorded in one transaction. A route that pauses meanwhile (its handler
    slow or unreachable, ``worker.handoff_inline``) gets its remaining rows back, due, and
    a task each, like the rows inserted while it was paused. If this process dies before
    the record commits, the leases run out and the sweep hands the rows over again (the
    same keys: handlers drop repeats).
    """
    tried: list[_Attempt] = []
    released: list[int] = []
    done: list[tuple[_Attempt, str, float]] = []
    queued = [row.id for row in new if not row.inline]
    # One session for the bodies and the records: one connection checkout, one commit.
    with ctx.session_factory() as session:
        for row in new:
            if not row.inline:
                continue
            if not handoff_inline.takes_inline(row.route):
                released.append(row.id)
                continue
            claimed = _Claimed(
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
            done = [(attempt, *_record(session, ctx, attempt)) for attempt in tried]
            if released:
                _release(session, released)
            session.commit()
    for attempt, outcome, delay in done:
        _recorded(ctx, attempt, outcome, delay)
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


def _hand_off_outcome(ctx: DispatchContext, claimed: _Claimed, session: Session) -> _Attempt:
    """Hand a claimed dispatch to its handler; what came of it (not yet recorded).

    ``session`` reads an HTTP handler's body; the caller records the outcome with it.
    """
    route = ctx.routes.route(claimed.route) if claimed.route else None
    if route is None:
        return _Attempt(claimed, None, None, "route_removed")  # nothing to retry
    try:
        code = _hand_off(ctx, claimed, route, session)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception as exc:  # a handler down, a timeout, a broker error
        return _Attempt(claimed, route, None, type(exc).__name__, raised=True)
    failed = code is not None and not 200 <= code < 300
    return _Attempt(claimed, route, code, f"http_{code}" if failed else None)


def _claim(session: Session, ctx: DispatchContext, *where: ColumnElement[bool]) -> list[_Claimed]:
    """Claim the pending dispatches that match ``where``, in one statement: each one's
    attempt is counted and its ``next_attempt_at`` pushed a lease into the future, so no
    other publisher can claim it until this one records the outcome or the lease expires."""
    lease = timedelta(seconds=handoff_inline.lease_seconds(ctx.routes))
    # On the connection, not session.execute: there are no ORM objects to synchronise, and
    # the ORM's UPDATE path costs more CPU than the statement (0.7 -> 0.5 ms; record 0.5 -> 0.3).
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
        _Claimed(
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


def _hand_off(
    ctx: DispatchContext, claimed: _Claimed, route: Route, session: Session
) -> int | None:
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


# The attachments as a JSON list in the same row: one round trip per body.
_ATTACHMENTS_JSON = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_object(
                        *chain.from_iterable((c.key, c) for c in ATTACHMENT_COLUMNS)
                    ),
                    Attachment.position,
                )
            ),
            literal_column("'[]'::json"),
        )
    )
    .where(Attachment.email_id == Email.id)
    .scalar_subquery()
)
# Built once (see _RECORD): a body costs its round trip, not the statement's construction.
_BODY_QUERY = select(*BODY_COLUMNS, _ATTACHMENTS_JSON.label("attachments")).where(
    Email.id == bindparam("email_id")
)


def webhook_body(session: Session, claimed: _Claimed, route: str) -> bytes:
    """The JSON an HTTP handler receives (``worker.webhook_document``), read from the rows.

    Plain column reads (no ORM objects): this runs once per hand-off.
    """
    return document(stored_fields(session, claimed.email_id), claimed.id, claimed.key, route)


def stored_fields(session: Session, email_id: int) -> dict[str, Any]:
    """An email's body fields (``worker.webhook_document.email_fields``) read from its rows."""
    return session.connection().execute(_BODY_QUERY, {"email_id": email_id}).one()._asdict()


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: ``v1,`` + base64(HMAC-SHA256(key, "id.timestamp.body"))."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def post_signed(target: HttpTarget, message_id: str, body: bytes) -> int:
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "Kave-Handoff/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(signing_key(target), message_id, timestamp, body),
    }
    response = _http_pool().request(
        "POST",
        str(target.url),
        body=body,
        headers=headers,
        timeout=urllib3.Timeout(
            connect=min(5.0, target.timeout_seconds), read=target.timeout_seconds
        ),
        # Retries are the dispatcher's own (backoff, budget, dead letter); a signed POST
        # must not be replayed to wherever a 30x points.
        retries=False,
        redirect=False,
    )
    return response.status


_pool: tuple[int, urllib3.PoolManager] | None = None


def _http_pool() -> urllib3.PoolManager:
    """One connection pool per process, kept: connections are reused, and building one
    (its TLS context) costs more CPU than a POST. Never inherited across a fork.

    urllib3 rather than httpx: the same keep-alive POST costs about half the CPU (0.3
    against 0.6 ms here), and the hand-off's budget is 20% of an email's processing."""
    global _pool  # noqa: PLW0603 - one per process, by design
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), urllib3.PoolManager(num_pools=16, maxsize=2, retries=False))
    return _pool[1]


def _record_statement(**values: Any) -> ReturningUpdate[tuple[int]]:
    return (
        update(Dispatch)
        .where(
            Dispatch.id == bindparam("row_id"),
            Dispatch.status == DispatchStatus.PENDING,
            Dispatch.attempts == bindparam("row_attempts"),
        )
        .values(
            **values,
            last_status_code=bindparam("answer_code"),
            last_error=bindparam("error_class"),
            updated_at=func.now(),
        )
        .returning(Dispatch.id)
    )


# Built once per outcome: a reused statement keeps its memoised cache key, so a record
# costs the round trip and not the statement's construction (see worker.outbox).
_RECORD = {
    "delivered": _record_statement(status=DispatchStatus.DELIVERED, delivered_at=func.now()),
    "dead": _record_statement(status=DispatchStatus.DEAD),
    "retried": _record_statement(next_attempt_at=func.now() + bindparam("delay", type_=Interval)),
}


def _record(session: Session, ctx: DispatchContext, tried: _Attempt) -> tuple[str, float]:
    """Write an attempt's outcome (in the caller's transaction); its outcome and, if
    retried, the backoff delay.

    Only while the row is still this attempt's: a publisher that outlived its lease (a
    handler dripping its answer, a paused process) may find the row claimed again since,
    maybe delivered; its late outcome is then ``superseded`` and changes nothing.
    """
    claimed, error = tried.claimed, tried.error
    delay = 0.0
    if error is None:
        outcome = "delivered"
    elif tried.route is None or claimed.attempts >= ctx.max_attempts:
        outcome = "dead"
    else:
        outcome = "retried"
        delay = backoff_seconds(claimed.attempts, ctx.backoff_max_seconds)
    written = (
        session.connection()  # Core, not the ORM's UPDATE path: see _claim
        .execute(
            _RECORD[outcome],
            {
                "row_id": claimed.id,
                "row_attempts": claimed.attempts,
                "answer_code": tried.code,
                "error_class": error,
                "delay": timedelta(seconds=delay),
            },
        )
        .first()
    )
    if written is None:
        return "superseded", 0.0
    if outcome == "delivered" and claimed.failed_before:
        # Only a dispatch that failed can have a dead letter (a replay keeps last_error):
        # one statement less on the common path.
        resolve_dead_letter(session, claimed.delivery_id, dead_letter_index(claimed.id))
    elif outcome == "dead":
        record_dead_letter(
            session,
            claimed.delivery_id,
            dead_letter_index(claimed.id),
            kind="dispatch",
            error_class=f"dispatch_{error}"[:ERROR_CLASS_CHARS],
            message=(
                f"dispatch {claimed.id} of email {claimed.email_id} to route "
                f"{claimed.route or '-'} failed after {claimed.attempts} attempts (last: {error})"
            ),
            traceback=None,
        )
    return outcome, delay


def _recorded(ctx: DispatchContext, tried: _Attempt, outcome: str, delay: float) -> None:
    """After the record's commit: schedule the retry, count and log the attempt."""
    claimed = tried.claimed
    label = claimed.route or "-"
    if outcome == "retried":
        # If this publish is lost (broker down) the sweep still finds the row when due.
        ctx.schedule(claimed.id, delay)
    handoff_metrics.dispatched(label, outcome)
    # A hand-off that went through is counted (kave_worker_dispatches_total) and on the
    # dispatch row (API, `kave dispatches list`): DEBUG, as each event of a delivery is.
    # What needs a look (retried, dead, superseded) stays at INFO.
    emit = log.debug if outcome == "delivered" else log.info
    emit(
        "dispatch.attempted",
        dispatch_id=claimed.id,
        email_id=claimed.email_id,
        route=label,
        attempt=claimed.attempts,
        outcome=outcome,
        status_code=tried.code,
        error=tried.error,
    )


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


def dead_dispatch_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Dispatch.id).where(Dispatch.status == DispatchStatus.DEAD)))


def open_dead_letter_of(session: Session, dispatch_id: int) -> DeadLetter | None:
    return session.scalars(
        select(DeadLetter).where(
            DeadLetter.kind == "dispatch",
            DeadLetter.event_index == dead_letter_index(dispatch_id),
            DeadLetter.status == DeadLetterStatus.OPEN,
        )
    ).one_or_none()
