"""Reconciliation: deliveries accepted or recorded but never finished are queued again.

A delivery row exists from a worker's first attempt. If its task message is then lost
(Redis restarted without the latest writes, a retry that was never published, a worker
that died while Redis was away), nothing else would ever finish it; this job finds such
deliveries by age and queues them again. A message lost before any attempt (a worker
killed between popping it and recording it unacknowledged) leaves no row: those
deliveries are found in the ledger of accepted deliveries (:mod:`shared.accepted`).
Processing is idempotent, so queuing one that is merely slow costs a little work,
never a duplicate. A delivery whose archive was erased or removed is never queued again
(``shared.lifecycle.erased``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select, update

from shared import accepted
from shared.contract import Envelope, payload_redis_key
from shared.models import Delivery, DeliveryStatus
from worker.errors import PermanentDeliveryError
from worker.ingest.batch import dead_letter_delivery
from worker.ingest.context import IngestContext, envelope_for

log = structlog.get_logger(__name__)

BATCH_LIMIT = 500


def stale_deliveries(ctx: IngestContext, older_than_seconds: int) -> list[Delivery]:
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    with ctx.session_factory() as session:
        return list(
            session.scalars(
                select(Delivery)
                .where(
                    Delivery.status == DeliveryStatus.RECEIVED,
                    Delivery.archive_removed_at.is_(None),
                    func.coalesce(Delivery.last_attempt_at, Delivery.created_at) < cutoff,
                )
                .order_by(Delivery.received_at)
                .limit(BATCH_LIMIT)
            )
        )


def reconcile(
    ctx: IngestContext, *, publish: Callable[[Envelope], None], older_than_seconds: int
) -> list[str]:
    """Queue stale deliveries again, recorded or only accepted; returns their ids."""
    return [
        *_requeue_recorded(ctx, publish, older_than_seconds),
        *_requeue_unrecorded(ctx, publish, older_than_seconds),
    ]


def _requeue_unrecorded(
    ctx: IngestContext, publish: Callable[[Envelope], None], older_than_seconds: int
) -> list[str]:
    """Accepted deliveries that no worker recorded, their task queued over
    ``older_than_seconds`` ago and before the next task still waiting in the queue: their
    message was lost before any attempt."""
    cutoff = time.time() - older_than_seconds
    waiting_since = ctx.ledger.waiting_since(ctx.redis)
    if waiting_since is not None:
        # Behind a backlog older than the cutoff, the deliveries queued since the next
        # one in line may still be waiting: queuing them again would only lengthen it.
        cutoff = min(cutoff, waiting_since)
    requeued = []
    for found in ctx.ledger.queued_before(ctx.redis, cutoff):
        envelope = found.envelope
        with ctx.session_factory() as session:
            recorded = session.get(Delivery, envelope.delivery_id) is not None
        if recorded:
            ctx.redis.delete(found.key)  # its row says how it stands (see above)
            continue
        if not _body_exists(ctx, envelope):
            # Not stored after all (a batch answered 503 whose entry outlived it):
            # Mandrill retried it; nothing of this delivery can be processed.
            ctx.redis.delete(found.key)
            log.warning("delivery.unrecorded_without_body", delivery_id=envelope.delivery_id)
            continue
        # Stamp it first, so the next run does not queue it again meanwhile.
        accepted.mark_queued(ctx.redis, found, time.time())
        publish(envelope)
        requeued.append(envelope.delivery_id)
        log.warning("delivery.requeued", delivery_id=envelope.delivery_id, reason="unrecorded")
    return requeued


def _body_exists(ctx: IngestContext, envelope: Envelope) -> bool:
    if envelope.payload_store == "redis":
        return bool(ctx.redis.exists(envelope.payload_key))
    return ctx.object_store.exists(envelope.payload_key)


def _requeue_recorded(
    ctx: IngestContext, publish: Callable[[Envelope], None], older_than_seconds: int
) -> list[str]:
    """Deliveries with a row, unfinished ``older_than_seconds`` after their last attempt."""
    requeued = []
    for delivery in stale_deliveries(ctx, older_than_seconds):
        envelope = envelope_for(delivery)
        if not ctx.object_store.exists(delivery.archive_key):
            redis_key = payload_redis_key(delivery.id)
            if not ctx.redis.exists(redis_key):
                lost = PermanentDeliveryError("the body is neither in Redis nor in the archive")
                dead_letter_delivery(ctx, envelope, "unreadable", lost)
                continue
            envelope = Envelope(**{**envelope.to_message(), "payload_store": "redis",
                                   "payload_key": redis_key})  # fmt: skip
        # Stamp the attempt first, so the next run does not queue it again meanwhile.
        with ctx.session_factory() as session, session.begin():
            session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id)
                .values(last_attempt_at=func.now())
            )
        publish(envelope)
        requeued.append(delivery.id)
        log.warning("delivery.requeued", delivery_id=delivery.id, reason="unfinished")
    return requeued
