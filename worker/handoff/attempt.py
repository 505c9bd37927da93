"""One attempt at a dispatch: what it works with (the context, the claimed row), what
came of it, and its record in the row (delivered, retried with backoff, or dead with a
dead letter)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Interval, bindparam, func, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningUpdate

from shared.models import (
    Dispatch,
    DispatchStatus,
)
from worker.handoff import metrics as handoff_metrics
from worker.handoff.routes import Route, RouteTable
from worker.ingest.columns import ERROR_CLASS_CHARS
from worker.ingest.storage.dead_letters import record_dead_letter, resolve_dead_letter

log = structlog.get_logger(__name__)

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
class Claimed:
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
class Attempt:
    claimed: Claimed
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
# costs the round trip and not the statement's construction (see worker.handoff.outbox).
_RECORD = {
    "delivered": _record_statement(status=DispatchStatus.DELIVERED, delivered_at=func.now()),
    "dead": _record_statement(status=DispatchStatus.DEAD),
    "retried": _record_statement(next_attempt_at=func.now() + bindparam("delay", type_=Interval)),
}


def record_attempt(session: Session, ctx: DispatchContext, tried: Attempt) -> tuple[str, float]:
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
        session.connection()  # Core, not the ORM's UPDATE path: see dispatch._claim
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


def after_record(ctx: DispatchContext, tried: Attempt, outcome: str, delay: float) -> None:
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
