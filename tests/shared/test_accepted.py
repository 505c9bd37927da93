"""The ledger's view of the queue: when the next task in line was queued (real Redis,
messages published by Celery itself)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from shared.accepted import AcceptedLedger, accepted_entry
from shared.contract import PROCESS_DELIVERY_TASK, Envelope
from shared.queue import make_producer
from shared.settings import Settings
from tests.services import derive_settings


@pytest.fixture
def settings(base_settings: Settings, redis_client: redis.Redis) -> Iterator[Settings]:
    """A queue of this test alone, which no worker consumes."""
    own = derive_settings(base_settings, queue_name=f"kave-line-{uuid.uuid4().hex[:8]}")
    yield own
    redis_client.delete(own.queue_name)
    for key in redis_client.scan_iter(match=AcceptedLedger(own.queue_name).prefix + "*"):
        redis_client.delete(key)


def _envelope(received_at: datetime) -> Envelope:
    delivery_id = str(uuid.uuid4())
    return Envelope(
        delivery_id=delivery_id,
        received_at=received_at.isoformat(),
        body_sha256="0" * 64,
        body_size=10,
        payload_store="redis",
        payload_key=f"kave:payload:{delivery_id}",
        request_id="test",
    )


def _publish(settings: Settings, task: str, **kwargs: object) -> None:
    celery = make_producer(settings, "kave-test-ledger-line")
    try:
        celery.send_task(task, kwargs=kwargs, queue=settings.queue_name, retry=False)
    finally:
        celery.close()


def test_an_empty_queue_has_nothing_waiting(settings: Settings, redis_client: redis.Redis) -> None:
    assert AcceptedLedger(settings.queue_name).waiting_since(redis_client) is None


def test_the_next_task_in_line_is_the_first_queued(
    settings: Settings, redis_client: redis.Redis
) -> None:
    ledger = AcceptedLedger(settings.queue_name)
    accepted_at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    first = _envelope(accepted_at)
    second = _envelope(datetime(2026, 12, 1, 10, 5, tzinfo=UTC))
    for envelope, queued_at in ((first, 1_000.0), (second, 2_000.0)):
        redis_client.set(ledger.key(envelope.delivery_id), accepted_entry(envelope, queued_at))
        _publish(settings, PROCESS_DELIVERY_TASK, envelope=envelope.to_message())

    assert ledger.waiting_since(redis_client) == 1_000.0

    # Its delivery ended and this copy of its message is spare: it was queued no
    # earlier than it was accepted.
    redis_client.delete(ledger.key(first.delivery_id))
    assert ledger.waiting_since(redis_client) == accepted_at.timestamp()


def test_a_message_that_names_no_delivery_says_nothing_about_the_line(
    settings: Settings, redis_client: redis.Redis
) -> None:
    _publish(settings, "kave.some_other_task", older_than_seconds=60)
    assert AcceptedLedger(settings.queue_name).waiting_since(redis_client) is None
    redis_client.rpush(settings.queue_name, b"not a kombu message")  # next in line now
    assert AcceptedLedger(settings.queue_name).waiting_since(redis_client) is None
