"""Reconciliation: deliveries recorded but never finished are queued again.

A delivery row exists from a worker's first attempt. If its task message is then lost
(Redis restarted without the latest writes, a retry that was never published, a worker
that died while Redis was away), nothing else would ever finish it; this job finds such
deliveries by age and queues them again. Processing is idempotent, so queuing one that
is merely slow costs a little work, never a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select, update

from shared.contract import Envelope, payload_redis_key
from shared.models import Delivery, DeliveryStatus
from worker import ingest
from worker.errors import PermanentDeliveryError
from worker.ingest import IngestContext

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
                    func.coalesce(Delivery.last_attempt_at, Delivery.created_at) < cutoff,
                )
                .order_by(Delivery.received_at)
                .limit(BATCH_LIMIT)
            )
        )


def reconcile(
    ctx: IngestContext, *, publish: Callable[[Envelope], None], older_than_seconds: int
) -> list[str]:
    """Queue stale deliveries again; returns their ids."""
    requeued = []
    for delivery in stale_deliveries(ctx, older_than_seconds):
        envelope = ingest.envelope_for(delivery)
        if not ctx.object_store.exists(delivery.archive_key):
            redis_key = payload_redis_key(delivery.id)
            if not ctx.redis.exists(redis_key):
                lost = PermanentDeliveryError("the body is neither in Redis nor in the archive")
                ingest.dead_letter_delivery(ctx, envelope, "unreadable", lost)
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
