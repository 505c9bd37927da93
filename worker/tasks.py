"""Celery tasks: thin shells that decode arguments, call a service and apply the retry
policy of ``worker.retry_policy``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

import structlog
from celery import Task, shared_task
from celery.exceptions import Reject

from shared.contract import (
    PROCESS_DELIVERY_TASK,
    RECONCILE_TASK,
    REPLAY_DEAD_LETTER_TASK,
    Envelope,
    EnvelopeError,
)
from shared.models import EventOutcome
from shared.settings import get_settings
from worker import handoff_tasks, ingest, reconcile, replay
from worker import metrics as worker_metrics
from worker.resources import ingest_context
from worker.retry_policy import GiveUp, decide

log = structlog.get_logger(__name__)


@shared_task(name=PROCESS_DELIVERY_TASK, bind=True, max_retries=None)
def process_delivery(self: Task, envelope: dict[str, Any]) -> dict[str, Any] | None:
    try:
        parsed = Envelope.from_message(envelope)
    except EnvelopeError as exc:
        log.error("delivery.bad_envelope", reason=str(exc))
        return None
    structlog.contextvars.bind_contextvars(
        delivery_id=parsed.delivery_id, request_id=parsed.request_id
    )
    context = ingest_context()
    try:
        result = ingest.process_delivery(context, parsed)
    except Exception as exc:
        decision = decide(
            exc,
            retries=self.request.retries,
            received_at=datetime.fromisoformat(parsed.received_at),
            now=datetime.now(UTC),
            settings=get_settings(),
        )
        if isinstance(decision, GiveUp):
            # If even this write fails the delivery stays unfinished, and
            # reconciliation re-enqueues it later.
            ingest.dead_letter_delivery(context, parsed, decision.error_class, exc)
            worker_metrics.delivery_dead_lettered(decision.error_class)
            return None
        log.warning(
            "delivery.retrying",
            error_type=type(exc).__name__,
            retries=self.request.retries,
            countdown=round(decision.countdown, 2),
        )
        retry_later(self, exc, decision.countdown, summary=parsed.summary())
    log.info("delivery.processed", events=result.event_count, outcomes=result.outcomes)
    # Hand-off hook (issue 10): publish the dispatch rows committed with the new emails.
    if result.outcomes.get(EventOutcome.STORED):
        handoff_tasks.publish_new(result.delivery_id)
    return {"delivery_id": result.delivery_id, "outcomes": result.outcomes}


def retry_later(task: Task, exc: Exception, countdown: float, *, summary: str) -> NoReturn:
    """Schedule the retry; if the broker cannot take it, give the message back instead.

    Celery's ``retry`` publishes a new message and, when that publish fails (Redis is
    the thing that is down), rejects the current one without requeueing: the task would
    be gone. Requeueing keeps it in Redis; if even that cannot be sent, the message
    stays unacknowledged and returns after the visibility timeout.
    """
    try:
        # The retried message gets the same short reprs as the first one (for Flower).
        raise task.retry(exc=exc, countdown=countdown, argsrepr="()", kwargsrepr=summary)
    except Reject as rejected:
        log.warning("delivery.retry_not_published", error_type=type(rejected.reason).__name__)
        raise Reject(rejected.reason, requeue=True) from exc


@shared_task(name=REPLAY_DEAD_LETTER_TASK, bind=True, max_retries=5)
def replay_dead_letter(self: Task, dead_letter_id: int) -> str:
    structlog.contextvars.bind_contextvars(dead_letter_id=dead_letter_id)
    try:
        outcome = replay.replay_dead_letter(ingest_context(), dead_letter_id)
    except Exception as exc:
        decision = decide(
            exc,
            retries=self.request.retries,
            received_at=datetime.now(UTC),
            now=datetime.now(UTC),
            settings=get_settings(),
        )
        if isinstance(decision, GiveUp):
            raise
        retry_later(self, exc, decision.countdown, summary=f"dead_letter_id={dead_letter_id}")
    log.info("dead_letter.replayed", outcome=outcome)
    return outcome


@shared_task(name=RECONCILE_TASK)
def reconcile_deliveries() -> int:
    settings = get_settings()
    requeued = reconcile.reconcile(
        ingest_context(),
        publish=publish_delivery,
        older_than_seconds=settings.reconcile_after_seconds,
    )
    return len(requeued)


def publish_delivery(envelope: Envelope) -> None:
    """Queue a delivery again, with the same small message the receiver sends."""
    process_delivery.apply_async(
        kwargs={"envelope": envelope.to_message()},
        argsrepr="()",
        kwargsrepr=envelope.summary(),
        headers={"request_id": envelope.request_id},
    )
