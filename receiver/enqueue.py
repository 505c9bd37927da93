"""Making an accepted batch durable before the receiver answers 200.

The body is stored first (Redis for ordinary sizes; the object store above the claim
check threshold, so Redis memory stays small), with the delivery's entry in the ledger
of accepted deliveries (:mod:`shared.accepted`, in the same Redis command as the body),
then a small envelope task pointing at it is published. Only when all succeeded within
the time budget is the batch accepted; otherwise the caller answers 503, the entry is
dropped with the body (which a timeout leaves for a day, see ``enqueue``), and Mandrill
retries the batch later.

With ``KAVE_REDIS_MIN_REPLICAS_ACK`` above 0, the command that stores the body and the
entry is followed, on the same connection and in the same round trip, by Redis ``WAIT``:
the batch counts as stored only once that many replicas acknowledged it (``WAIT`` counts
a replica once it has everything this connection wrote). Fewer within the bound is a 503
before the task is published, so a failover (or a lost primary disk) cannot take a batch
that was answered 200. The task message itself is not waited for: a message lost with a
primary leaves the ledger entry behind on the replica, and reconciliation queues it again.

The task messages are published by one thread per process (:class:`BatchPublisher`), not
by a thread-pool call per request: publishing a task is blocking code, and publishing
one message per Redis round trip costs ~0.45 ms of CPU each (message, LPUSH, and the
task-sent event). The thread takes every envelope waiting at that moment and publishes
them with kombu's ``Producer.batch()``, which sends them all in one Redis pipeline: under
load ~0.15 ms each, and one thread wake-up per batch instead of one per request. Each
request still waits for its own message to be flushed to Redis before it is answered.
The messages are those ``send_task`` sends, built without its per-call work
(:mod:`receiver.task_message`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from celery import Celery
from redis.asyncio import Redis

from receiver.task_message import TaskSender
from shared.accepted import AcceptedLedger, accepted_entry
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


@dataclass(frozen=True, slots=True)
class ReplicaAck:
    """How many replicas must acknowledge a batch before its 200 (0: none), and how long
    Redis may wait for them."""

    replicas: int = 0
    timeout_seconds: float = 0.5


# The publisher thread ends after this long without work (and starts again on demand),
# so an app that is thrown away (tests build many) leaves no thread behind for long.
PUBLISHER_IDLE_SECONDS = 30.0
# Most messages published in one Redis pipeline.
MAX_BATCH = 256
# How long the body of a batch answered 503 after a timeout is kept (see enqueue).
ABANDONED_BODY_TTL_SECONDS = 24 * 3600


@dataclass(eq=False)
class _Publication:
    envelope: Envelope
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    # Set by the caller when it gave up waiting (it answers 503 and drops the body):
    # a publication not yet sent is then skipped.
    abandoned: bool = field(default=False)


class BatchPublisher:
    """Publishes task messages from one thread, all waiting ones per Redis round trip."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        self.tasks = TaskSender(celery, PROCESS_DELIVERY_TASK)
        self._pending: queue.SimpleQueue[_Publication | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def publish(self, envelope: Envelope, timeout: float) -> None:
        """Return once the task message is in Redis; raise if it could not be sent."""
        loop = asyncio.get_running_loop()
        publication = _Publication(envelope, loop, loop.create_future())
        self._pending.put(publication)
        self._ensure_thread()
        try:
            async with asyncio.timeout(timeout):
                await publication.future
        except BaseException:
            publication.abandoned = True
            raise

    def close(self) -> None:
        """Stop the thread once it has published what is waiting."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._pending.put(None)
            thread.join(timeout=5)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="kave-publisher", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._pending.get(timeout=PUBLISHER_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if not self._pending.empty():
                        continue
                    self._thread = None
                    return
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._pending.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._publish_batch(batch)

    def _publish_batch(self, batch: list[_Publication]) -> None:
        live = [item for item in batch if not item.abandoned]
        error: BaseException | None = None
        try:
            if live:
                with self.celery.producer_or_acquire() as producer, producer.batch():
                    for item in live:
                        self._send(producer, item.envelope)
        except Exception as exc:
            # The whole pipeline failed or its outcome is unknown: none is accepted, every
            # caller answers 503 and Mandrill retries (the workers tolerate duplicates).
            error = exc
        by_loop: dict[asyncio.AbstractEventLoop, list[_Publication]] = {}
        for item in live:
            by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, items, error)

    def _send(self, producer: Any, envelope: Envelope) -> None:
        self.tasks.send(
            producer,
            kwargs={"envelope": envelope.to_message()},
            # Flower and worker logs show these reprs, never the envelope itself.
            argsrepr="()",
            kwargsrepr=envelope.summary(),
            headers={"request_id": envelope.request_id},
        )


def _settle(items: list[_Publication], error: BaseException | None) -> None:
    for item in items:
        if item.future.done():
            continue  # the caller timed out
        if error is None:
            item.future.set_result(None)
        else:
            item.future.set_exception(EnqueueError(type(error).__name__))


class DeliveryQueue:
    def __init__(
        self,
        *,
        redis: Redis,
        celery: Celery,
        object_store: ObjectStore,
        claim_check_threshold: int,
        timeout_seconds: float,
        ledger: AcceptedLedger,
        replica_ack: ReplicaAck | None = None,
    ) -> None:
        self.redis = redis
        self.replica_ack = replica_ack or ReplicaAck()
        self.ledger = ledger
        self.celery = celery
        self.object_store = object_store
        self.claim_check_threshold = claim_check_threshold
        self.timeout_seconds = timeout_seconds
        self.publisher = BatchPublisher(celery)

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
            async with asyncio.timeout_at(deadline):
                await self._store_body(envelope, body)
            await self.publisher.publish(envelope, max(deadline - loop.time(), 0.05))
        except Exception as exc:
            log.error(
                "delivery.enqueue_failed",
                delivery_id=delivery_id,
                size=len(body),
                payload_store=store,
                error_type=str(exc) if isinstance(exc, EnqueueError) else type(exc).__name__,
            )
            # After a timeout the message may still reach Redis a moment later; its body
            # then has a day to be processed instead of vanishing under it.
            await self._forget(envelope, expire=isinstance(exc, TimeoutError))
            if isinstance(exc, EnqueueError):
                raise
            raise EnqueueError(type(exc).__name__) from exc
        log.info("delivery.enqueued", delivery_id=delivery_id, size=len(body), payload_store=store)
        return envelope

    async def _store_body(self, envelope: Envelope, body: bytes) -> None:
        entry_key = self.ledger.key(envelope.delivery_id)
        entry = accepted_entry(envelope, time.time())
        writes: dict[str, bytes] = {entry_key: entry}
        if envelope.payload_store == "object":
            # The claim check: the body in the object store, its pointer (the entry) in Redis.
            await asyncio.to_thread(self.object_store.put, envelope.payload_key, body)
        else:
            writes[envelope.payload_key] = body
        wanted = self.replica_ack.replicas
        if not wanted:
            await self.redis.mset(writes)
            return
        # One connection for both: WAIT counts what *this* connection wrote.
        pipe = self.redis.pipeline(transaction=False)
        pipe.mset(writes)
        pipe.wait(wanted, max(int(self.replica_ack.timeout_seconds * 1000), 1))
        _, acknowledged = await pipe.execute()
        if acknowledged < wanted:
            raise EnqueueError(f"replicas_not_acknowledged:{acknowledged}/{wanted}")

    async def _forget(self, envelope: Envelope, *, expire: bool) -> None:
        """Drop what was stored of a batch answered 503: its ledger entry (it was not
        accepted), and its Redis body (``expire``: in a day)."""
        entry_key = self.ledger.key(envelope.delivery_id)
        # Best effort: a body left behind is only wasted memory, never a lost email; an
        # entry left behind is queued once by reconciliation, harmlessly (workers skip
        # what is already stored).
        try:
            async with asyncio.timeout(0.5):
                if envelope.payload_store != "redis":
                    await self.redis.delete(entry_key)
                elif expire:
                    pipe = self.redis.pipeline(transaction=False)
                    pipe.expire(envelope.payload_key, ABANDONED_BODY_TTL_SECONDS)
                    pipe.delete(entry_key)
                    await pipe.execute()
                else:
                    await self.redis.delete(envelope.payload_key, entry_key)
        except Exception:
            log.warning("delivery.orphan_payload", payload_key=envelope.payload_key)

    def close(self) -> None:
        """Stop the publisher thread (it also stops by itself when idle)."""
        self.publisher.close()
