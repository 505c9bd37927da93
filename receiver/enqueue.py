"""Making an accepted batch durable before the receiver answers 200.

The body is stored first (Redis for ordinary sizes; the object store above the claim
check threshold, so Redis memory stays small), then a small envelope task pointing at it
is published. Only when both succeeded within the time budget is the batch accepted;
otherwise the caller answers 503 and Mandrill retries the batch later.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime

import structlog
from celery import Celery
from redis.asyncio import Redis

from shared.contract import (
    PROCESS_DELIVERY_TASK,
    Envelope,
    PayloadStore,
    archive_object_key,
    payload_redis_key,
)
from shared.objectstore import ObjectStore

log = structlog.get_logger(__name__)


class EnqueueError(RuntimeError):
    """The batch could not be made durable."""


class DeliveryQueue:
    def __init__(
        self,
        *,
        redis: Redis,
        celery: Celery,
        object_store: ObjectStore,
        claim_check_threshold: int,
        timeout_seconds: float,
    ) -> None:
        self.redis = redis
        self.celery = celery
        self.object_store = object_store
        self.claim_check_threshold = claim_check_threshold
        self.timeout_seconds = timeout_seconds

    async def enqueue(self, body: bytes, request_id: str) -> Envelope:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        delivery_id = str(uuid.uuid4())
        body_sha256 = hashlib.sha256(body).hexdigest()
        store: PayloadStore
        if len(body) > self.claim_check_threshold:
            store, key = "object", archive_object_key(body_sha256)
        else:
            store, key = "redis", payload_redis_key(delivery_id)
        envelope = Envelope(
            delivery_id=delivery_id,
            received_at=datetime.now(UTC).isoformat(),
            body_sha256=body_sha256,
            body_size=len(body),
            payload_store=store,
            payload_key=key,
            request_id=request_id,
        )
        try:
            await asyncio.wait_for(self._store_body(envelope, body), deadline - loop.time())
            await asyncio.wait_for(
                asyncio.to_thread(self._publish, envelope), max(deadline - loop.time(), 0.05)
            )
        except Exception as exc:
            log.error(
                "delivery.enqueue_failed",
                delivery_id=delivery_id,
                size=len(body),
                payload_store=store,
                error_type=type(exc).__name__,
            )
            if store == "redis":
                await self._forget_body(key)
            raise EnqueueError(str(type(exc).__name__)) from exc
        log.info("delivery.enqueued", delivery_id=delivery_id, size=len(body), payload_store=store)
        return envelope

    async def _store_body(self, envelope: Envelope, body: bytes) -> None:
        if envelope.payload_store == "object":
            await asyncio.to_thread(self.object_store.put, envelope.payload_key, body)
        else:
            await self.redis.set(envelope.payload_key, body)

    def _publish(self, envelope: Envelope) -> None:
        self.celery.send_task(
            PROCESS_DELIVERY_TASK,
            kwargs={"envelope": envelope.to_message()},
            # Flower and worker logs show these reprs, never the envelope itself.
            argsrepr="()",
            kwargsrepr=envelope.summary(),
            headers={"request_id": envelope.request_id},
            retry=False,
        )

    async def _forget_body(self, key: str) -> None:
        # Best effort: a body left behind is only wasted memory, never a lost email.
        try:
            await asyncio.wait_for(self.redis.delete(key), 0.5)
        except Exception:
            log.warning("delivery.orphan_payload", payload_key=key)
