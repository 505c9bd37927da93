"""Celery tasks: thin shells that decode arguments and call a service; the base task
(``worker.task_base``) gives them their context, describes their failures and applies the
retry policy of ``worker.errors``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from celery import shared_task

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
from worker import metrics as worker_metrics
from worker.errors import GiveUp
from worker.handoff import tasks as handoff_tasks
from worker.ingest import batch
from worker.ingest.context import DeliveryResult, IngestContext
from worker.losses import LossTracker
from worker.recovery import reconcile, replay
from worker.task_base import KaveTask
from worker.text import tasks as text_tasks

log = structlog.get_logger(__name__)


# A message header, not a task argument: a worker of the previous release, still running
# during a rolling upgrade, ignores an unknown header but fails on an unknown argument.
REQUEUED_HEADER = "kave_requeued"


@shared_task(name=PROCESS_DELIVERY_TASK, bind=True, base=KaveTask, max_retries=None)
def process_delivery(self: KaveTask, envelope: dict[str, Any]) -> dict[str, Any] | None:
    try:
        parsed = Envelope.from_message(envelope)
    except EnvelopeError as exc:
        log.error("delivery.bad_envelope", reason=str(exc))
        return None
    structlog.contextvars.bind_contextvars(
        delivery_id=parsed.delivery_id, request_id=parsed.request_id
    )
    context = self.context.ingest

    def work() -> DeliveryResult | None:
        # Inside the retry policy: a database that is down is retried, not a lost task.
        if _seen_before(self) and _refuse_erased(context, parsed):
            return None
        return batch.process_delivery(context, parsed)

    def give_up(decision: GiveUp, exc: Exception) -> None:
        # If even this write fails the delivery stays unfinished, and reconciliation
        # re-enqueues it later.
        batch.dead_letter_delivery(context, parsed, decision.error_class, exc, decision.message)
        worker_metrics.delivery_dead_lettered(decision.error_class)

    result = self.run_with_retries(
        work,
        received_at=datetime.fromisoformat(parsed.received_at),
        summary=parsed.summary(),
        give_up=give_up,
        event="delivery.retrying",
    )
    if result is None:
        return None
    log.info("delivery.processed", events=result.event_count, outcomes=result.outcomes)
    # Hand-off: hand over the dispatch rows committed with the new emails.
    if result.new_dispatches:
        handoff_tasks.hand_off_new(result.new_dispatches)
    # Attachment text: queue the new contents' conversions, on their own queue.
    if result.text_pending:
        text_tasks.queue_conversions(result.text_pending, self.context.settings)
    return {"delivery_id": result.delivery_id, "outcomes": result.outcomes}


def _seen_before(task: KaveTask) -> bool:
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


@shared_task(name=REPLAY_DEAD_LETTER_TASK, bind=True, base=KaveTask, max_retries=5)
def replay_dead_letter(self: KaveTask, dead_letter_id: int) -> str:
    structlog.contextvars.bind_contextvars(dead_letter_id=dead_letter_id)
    context = self.context

    def work() -> str:
        try:
            return replay.replay_dead_letter(
                context.ingest, dead_letter_id, handoff=handoff_tasks.dispatch_context(context)
            )
        except ArchiveRemovedError:
            # Final: no retry would change it (the API refuses such a replay up front).
            log.warning("dead_letter.replay_refused", reason="archive_removed")
            return "refused"

    def give_up(_: GiveUp, exc: Exception) -> str:
        raise exc

    outcome = self.run_with_retries(
        work,
        received_at=datetime.now(UTC),
        summary=f"dead_letter_id={dead_letter_id}",
        give_up=give_up,
    )
    log.info("dead_letter.replayed", outcome=outcome)
    return outcome


# Housekeeping on beat's timer: no task events (see worker.task_base), so Flower lists mail.
@shared_task(name=RECONCILE_TASK, bind=True, base=KaveTask, send_events=False)
def reconcile_deliveries(self: KaveTask) -> int:
    context = self.context
    requeued = reconcile.reconcile(
        context.ingest,
        publish=publish_delivery,
        older_than_seconds=context.settings.reconcile_after_seconds,
    )
    return len(requeued)


@shared_task(name=PURGE_TASK, bind=True, base=KaveTask, send_events=False)
def purge_by_retention(self: KaveTask) -> dict[str, int]:
    context = self.context
    settings = context.settings
    # Half the time limit: what is left waits for the next run (every batch is final).
    report = purge(
        context.ingest.session_factory,
        context.ingest.object_store,
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
