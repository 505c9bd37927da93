"""Building Mandrill-shaped requests for tests."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime

import httpx
import redis
from sqlalchemy import Engine, select

from shared.contract import Envelope, payload_redis_key
from shared.mandrill_signature import signed_form as mandrill_signed_form
from shared.models import Delivery, DeliveryStatus
from shared.webhook import WEBHOOK_PATH
from tests.services import FIXTURES, TEST_WEBHOOK_KEY, TEST_WEBHOOK_URL, wait_until


def fixture_events(name: str) -> str:
    """A fixture's mandrill_events value, byte for byte as stored."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def signed_form(
    events: str, *, key: str = TEST_WEBHOOK_KEY, url: str = TEST_WEBHOOK_URL
) -> tuple[bytes, dict[str, str]]:
    return mandrill_signed_form(key, url, events)


def received_in_redis(
    redis_client: redis.Redis, events: str, *, sha256: str | None = None
) -> Envelope:
    """A batch as the receiver leaves it for a worker (its body in Redis, no task sent);
    ``sha256`` overrides the digest in the envelope."""
    body, _ = signed_form(events)
    delivery_id = str(uuid.uuid4())
    redis_client.set(payload_redis_key(delivery_id), body)
    return Envelope(
        delivery_id=delivery_id,
        received_at=datetime.now(UTC).isoformat(),
        body_sha256=sha256 or hashlib.sha256(body).hexdigest(),
        body_size=len(body),
        payload_store="redis",
        payload_key=payload_redis_key(delivery_id),
        request_id="test",
    )


def post_events(base_url: str, events: str, **kwargs: str) -> httpx.Response:
    body, headers = signed_form(events, **kwargs)
    return httpx.post(base_url + WEBHOOK_PATH, content=body, headers=headers, timeout=30)


def wait_for_deliveries(engine: Engine, delivery_ids: list[str], timeout: float = 60) -> None:
    """Until every delivery is processed or failed."""

    def done() -> bool:
        with engine.connect() as conn:
            statuses = (
                conn.execute(select(Delivery.status).where(Delivery.id.in_(delivery_ids)))
                .scalars()
                .all()
            )
        return len(statuses) == len(delivery_ids) and all(
            s in (DeliveryStatus.PROCESSED, DeliveryStatus.FAILED) for s in statuses
        )

    wait_until(done, timeout, f"deliveries {delivery_ids}", interval=0.1)


def settle(seconds: float = 0.5) -> None:
    """Give a worker time to do something it should not do (e.g. a duplicate write)."""
    time.sleep(seconds)
