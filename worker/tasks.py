"""Celery tasks: thin shells that decode the envelope, call a service and classify errors."""

from __future__ import annotations

import random
from typing import Any

import structlog
from celery import Task, shared_task

from shared.contract import PROCESS_DELIVERY_TASK, Envelope, EnvelopeError, archive_object_key
from worker import ingest, storage
from worker.errors import PermanentDeliveryError, is_transient
from worker.resources import ingest_context

log = structlog.get_logger(__name__)

# Transient failures (a service down) are retried with exponential backoff and jitter,
# capped per attempt; unknown errors get a few attempts before they are given up on.
MAX_TRANSIENT_RETRIES = 30
MAX_UNKNOWN_RETRIES = 3
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0


def backoff_seconds(retries: int) -> float:
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**retries)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


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
    except PermanentDeliveryError as exc:
        with context.session_factory() as session, session.begin():
            storage.record_delivery(session, parsed, archive_object_key(parsed.body_sha256))
            storage.finish_delivery(session, parsed.delivery_id, event_count=None, error=str(exc))
        log.error("delivery.failed", reason=str(exc))
        return None
    except Exception as exc:
        retries = self.request.retries
        limit = MAX_TRANSIENT_RETRIES if is_transient(exc) else MAX_UNKNOWN_RETRIES
        if retries >= limit:
            log.error("delivery.retries_exhausted", error_type=type(exc).__name__, retries=retries)
            raise
        countdown = backoff_seconds(retries)
        log.warning(
            "delivery.retrying",
            error_type=type(exc).__name__,
            transient=is_transient(exc),
            retries=retries,
            countdown=round(countdown, 2),
        )
        raise self.retry(exc=exc, countdown=countdown, max_retries=limit) from exc
    log.info("delivery.processed", events=result.event_count, outcomes=result.outcomes)
    return {"delivery_id": result.delivery_id, "outcomes": result.outcomes}
