"""Celery tasks: thin shells that decode arguments, call a service and apply the retry
policy of ``worker.errors``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, ParamSpec, TypeVar

import structlog
from celery import Task, shared_task
from celery.exceptions import Reject, TaskPredicate

from shared.contract import (
    PROCESS_DELIVERY_TASK,
    PURGE_TASK,
    RECONCILE_TASK,
    REPLAY_DEAD_LETTER_TASK,
    Envelope,
    EnvelopeError,
)
from shared.lifecycle.erased import ArchiveRemovedError, is_erased, remove_erased_archive
from shared.lifecycle.purge import purge
from shared.settings import get_settings
from worker import metrics as worker_metrics
from worker.errors import GiveUp, TaskFailure, decide, describe
from worker.handoff import tasks as handoff_tasks
from worker.ingest import batch
from worker.ingest.context import IngestContext
from worker.interrupts import INTERRUPTS
from worker.losses import LossTracker
from worker.recovery import reconcile, replay
from worker.resources import ingest_context

log = structlog.get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def described_failures(task: Callable[P, R]) -> Callable[P, R]:
    """Whatever escapes the task reaches Celery (its log lines, its task-failed event, so
    Flower) as a :class:`TaskFailure`: the frames where it was raised and ``describe``'s
    summary, not the original message, which could quote the payload."""

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return task(*args, **kwargs)
        except INTERRUPTS:
            raise  # a time limit: Celery knows what it means
        except (TaskPredicate, TaskFailure):
            raise  # Celery's own control flow (retry, reject), or already described
        except Exception as exc:
            raise TaskFailure.of(exc).with_traceback(exc.__traceback__) from None

    return run


# A message header, not a task argument: a worker of the previous release, still running
# during a rolling upgrade, ignores an unknown header but fails on an unknown argument.
REQUEUED_HEADER = "kave_requeued"


@shared_task(name=PROCESS_DELIVERY_TASK, bind=True, max_retries=None)
@described_failures
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
    retry: tuple[TaskFailure, float] | None = None
    try:
        # Inside the retry policy: a database that is down is retried, not a lost task.
        if _seen_before(self) and _refuse_erased(context, parsed):
            return None
        result = batch.process_delivery(context, parsed)
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
            batch.dead_letter_delivery(context, parsed, decision.error_class, exc, decision.message)
            worker_metrics.delivery_dead_lettered(decision.error_class)
            return None
        log.warning(
            "delivery.retrying",
            error_type=type(exc).__name__,
            error=describe(exc),
            retries=self.request.retries,
            countdown=round(decision.countdown, 2),
        )
        retry = (TaskFailure.of(exc), decision.countdown)
    if retry is not None:
        # Outside the except block, so that the retry does not carry the original
        # exception (and its message) as its context.
        retry_later(self, *retry, summary=parsed.summary())
    log.info("delivery.processed", events=result.event_count, outcomes=result.outcomes)
    # Hand-off: hand over the dispatch rows committed with the new emails.
    if result.new_dispatches:
        handoff_tasks.hand_off_new(result.new_dispatches)
    return {"delivery_id": result.delivery_id, "outcomes": result.outcomes}


def _seen_before(task: Task) -> bool:
    """Whether this delivery may have been recorded, and so erased, before this attempt:
    a retry, a redelivery (a worker died holding it) or reconciliation's queuing (its
    message header :data:`REQUEUED_HEADER`). The receiver's first message comes before
    any row, so it skips the check."""
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    requeued = bool(getattr(task.request, REQUEUED_HEADER, False))
    return requeued or redelivered or bool(task.request.retries)


def _refuse_erased(context: IngestContext, envelope: Envelope) -> bool:
    """Drop a queued delivery that was erased meanwhile, with what is left of it: the
    Redis copy of its body, its ledger entry and an archive an earlier attempt may have
    written back. True when it was refused."""
    if not is_erased(context.session_factory, envelope.delivery_id):
        return False
    # As a finished attempt leaves (worker.ingest.batch): its in-flight marker too, which a
    # worker that died holding this delivery left behind.
    LossTracker(context.redis, envelope.delivery_id).leave_deleting(
        *context.ledger.receiver_keys(envelope.delivery_id)
    )
    remove_erased_archive(context.session_factory, context.object_store, envelope.delivery_id)
    log.warning("delivery.refused_erased")
    return True


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
@described_failures
def replay_dead_letter(self: Task, dead_letter_id: int) -> str:
    structlog.contextvars.bind_contextvars(dead_letter_id=dead_letter_id)
    retry: tuple[TaskFailure, float] | None = None
    try:
        outcome = replay.replay_dead_letter(ingest_context(), dead_letter_id)
    except ArchiveRemovedError:
        # Final: no retry would change it (the API refuses such a replay up front).
        log.warning("dead_letter.replay_refused", reason="archive_removed")
        return "refused"
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
        retry = (TaskFailure.of(exc), decision.countdown)
    if retry is not None:
        retry_later(self, *retry, summary=f"dead_letter_id={dead_letter_id}")
    log.info("dead_letter.replayed", outcome=outcome)
    return outcome


@shared_task(name=RECONCILE_TASK)
@described_failures
def reconcile_deliveries() -> int:
    settings = get_settings()
    requeued = reconcile.reconcile(
        ingest_context(),
        publish=publish_delivery,
        older_than_seconds=settings.reconcile_after_seconds,
    )
    return len(requeued)


@shared_task(name=PURGE_TASK)
@described_failures
def purge_by_retention() -> dict[str, int]:
    settings = get_settings()
    context = ingest_context()
    # Half the time limit: what is left waits for the next run (every batch is final).
    report = purge(
        context.session_factory,
        context.object_store,
        settings,
        stop_after_seconds=settings.task_time_limit_seconds / 2,
    )
    return {**report.counts, "objects_deleted": report.objects.deleted}


def publish_delivery(envelope: Envelope) -> None:
    """Queue a delivery again, with the same small message the receiver sends."""
    process_delivery.apply_async(
        kwargs={"envelope": envelope.to_message()},
        argsrepr="()",
        kwargsrepr=envelope.summary(),
        headers={"request_id": envelope.request_id, REQUEUED_HEADER: True},
    )
