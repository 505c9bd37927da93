"""The webhook endpoint over the real app, real Redis and the S3 server.

These tests publish to a queue that no worker consumes, so what the receiver put in
Redis can be inspected exactly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from redis.asyncio import Redis as AsyncRedis

from kave.devstack import EmbeddedRedis
from receiver.app import create_app
from receiver.enqueue import ABANDONED_BODY_TTL_SECONDS, DeliveryQueue, EnqueueError
from shared.accepted import AcceptedLedger
from shared.contract import PROCESS_DELIVERY_TASK, archive_object_key
from shared.objectstore import S3ObjectStore, make_object_store
from shared.queue import make_producer
from shared.settings import MANDRILL_TEST_KEY, Settings
from tests.services import FIXTURES, TEST_WEBHOOK_URL, derive_settings, free_port
from tests.webhooks import WEBHOOK_PATH, fixture_events, signed_form


@pytest.fixture
def idle_settings(base_settings: Settings) -> Settings:
    """The session settings with a queue of its own that nobody consumes."""
    return derive_settings(base_settings, queue_name=f"kave-idle-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def client(idle_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(idle_settings)) as test_client:
        yield test_client


def queued(redis_client: redis.Redis, settings: Settings) -> list[bytes]:
    return list(redis_client.lrange(settings.queue_name, 0, -1))  # type: ignore[arg-type]


def task_kwargs(message: bytes) -> dict[str, Any]:
    """The keyword arguments inside a raw Celery message, as the worker will see them."""
    body = json.loads(base64.b64decode(json.loads(message)["body"]))
    _args, kwargs, _embed = body
    assert isinstance(kwargs, dict)
    return kwargs


def test_head_and_get_answer_200_without_any_key(base_settings: Settings) -> None:
    unconfigured = derive_settings(
        base_settings, mandrill_webhook_keys=[], mandrill_webhook_urls=[]
    )
    with TestClient(create_app(unconfigured)) as client:
        assert client.head(WEBHOOK_PATH).status_code == 200
        assert client.get(WEBHOOK_PATH).status_code == 200


def test_signed_batch_is_accepted_and_queued_as_a_small_envelope(
    client: TestClient, idle_settings: Settings, redis_client: redis.Redis
) -> None:
    body, headers = signed_form(fixture_events("inbound.json"))
    response = client.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "accepted"
    uuid.UUID(answer["delivery_id"])
    assert response.headers["X-Request-ID"]

    (message,) = queued(redis_client, idle_settings)
    envelope_message = json.loads(message)
    assert envelope_message["headers"]["task"] == PROCESS_DELIVERY_TASK
    # Flower and logs show the repr: ids and size, never the payload.
    assert envelope_message["headers"]["kwargsrepr"] == (
        f"delivery_id={answer['delivery_id']} size={len(body)}"
    )
    envelope = task_kwargs(message)["envelope"]
    assert envelope["delivery_id"] == answer["delivery_id"]
    assert envelope["body_size"] == len(body)
    assert envelope["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert envelope["payload_store"] == "redis"
    assert "raw_msg" not in json.dumps(envelope)
    stored = redis_client.get(f"kave:payload:{answer['delivery_id']}")
    assert stored == body
    # And the ledger of accepted deliveries knows it, for when the message is lost.
    entry_key = AcceptedLedger(idle_settings.queue_name).key(answer["delivery_id"])
    entry = json.loads(redis_client.get(entry_key) or b"null")
    assert entry["envelope"] == envelope
    assert time.time() - 60 < entry["queued_at"] <= time.time()


def test_a_batch_whose_task_cannot_be_published_leaves_no_ledger_entry(
    idle_settings: Settings, redis_url: str, redis_client: redis.Redis
) -> None:
    """The body and the entry are stored, then the broker cannot be reached within the
    time budget: the batch is refused (Mandrill sends it again). Its entry goes, so
    reconciliation never queues it; the body stays a day, for a message that may still
    have got through."""
    refused = derive_settings(idle_settings, redis_url="redis://127.0.0.1:9/0")

    async def enqueue() -> None:
        client = AsyncRedis.from_url(redis_url)
        queue = DeliveryQueue(
            redis=client,
            celery=make_producer(refused, "kave-test-refused"),
            object_store=make_object_store(idle_settings),
            claim_check_threshold=idle_settings.claim_check_threshold_bytes,
            timeout_seconds=1,
            ledger=AcceptedLedger(idle_settings.queue_name),
        )
        try:
            with pytest.raises(EnqueueError):
                await queue.enqueue(b"mandrill_events=%5B%5D", "req-refused")
        finally:
            queue.close()
            await client.aclose()

    ledger = AcceptedLedger(idle_settings.queue_name)
    entries = set(redis_client.scan_iter(match=ledger.prefix + "*"))
    bodies = set(redis_client.scan_iter(match="kave:payload:*"))
    asyncio.run(enqueue())
    assert set(redis_client.scan_iter(match=ledger.prefix + "*")) == entries
    (body,) = set(redis_client.scan_iter(match="kave:payload:*")) - bodies
    assert 0 < redis_client.ttl(body) <= ABANDONED_BODY_TTL_SECONDS


def test_test_webhook_empty_batch_is_answered_200_and_not_queued(
    base_settings: Settings, redis_client: redis.Redis
) -> None:
    # Mandrill validates a URL before the user has configured anything.
    unconfigured = derive_settings(
        base_settings,
        mandrill_webhook_keys=[],
        mandrill_webhook_urls=[],
        queue_name=f"kave-idle-{uuid.uuid4().hex[:8]}",
    )
    with TestClient(create_app(unconfigured)) as client:
        seen_url = "http://testserver" + WEBHOOK_PATH
        body, headers = signed_form("[]", key=MANDRILL_TEST_KEY, url=seen_url)
        response = client.post(WEBHOOK_PATH, content=body, headers=headers)
        assert response.status_code == 200
        assert response.json()["delivery_id"] is None
        assert queued(redis_client, unconfigured) == []


def test_test_webhook_key_cannot_sign_a_real_batch(
    client: TestClient, idle_settings: Settings, redis_client: redis.Redis
) -> None:
    body, headers = signed_form(fixture_events("send.json"), key=MANDRILL_TEST_KEY)
    response = client.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 401
    assert queued(redis_client, idle_settings) == []


@pytest.mark.parametrize(
    ("signature", "expected"),
    [(None, "missing X-Mandrill-Signature"), ("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "does not match")],
)
def test_missing_or_wrong_signature_is_401(
    client: TestClient,
    idle_settings: Settings,
    redis_client: redis.Redis,
    signature: str | None,
    expected: str,
) -> None:
    body, headers = signed_form(fixture_events("inbound.json"))
    del headers["X-Mandrill-Signature"]
    if signature:
        headers["X-Mandrill-Signature"] = signature
    response = client.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["status"] == "error"
    assert expected in response.json()["message"]
    assert queued(redis_client, idle_settings) == []


def test_signature_for_another_url_is_401(client: TestClient) -> None:
    body, headers = signed_form(fixture_events("inbound.json"), url=TEST_WEBHOOK_URL + "/")
    assert client.post(WEBHOOK_PATH, content=body, headers=headers).status_code == 401


def test_any_configured_key_and_url_verifies(base_settings: Settings) -> None:
    rotated = derive_settings(
        base_settings,
        mandrill_webhook_keys=[*base_settings.webhook_keys(), "old-key"],
        mandrill_webhook_urls=["https://other.example/hook", TEST_WEBHOOK_URL],
        queue_name=f"kave-idle-{uuid.uuid4().hex[:8]}",
    )
    with TestClient(create_app(rotated)) as client:
        body, headers = signed_form(fixture_events("open.json"), key="old-key")
        assert client.post(WEBHOOK_PATH, content=body, headers=headers).status_code == 200


def test_captured_mandrill_request_verifies(base_settings: Settings) -> None:
    """The real request captured from Mandrill, posted byte for byte."""
    vectors = json.loads((FIXTURES / "signature_vectors.json").read_text())["vectors"]
    captured = next(v for v in vectors if v["id"] == "mandrill-rails-click-captured")
    settings = derive_settings(
        base_settings,
        mandrill_webhook_keys=[captured["key"]],
        mandrill_webhook_urls=[captured["url"]],
        queue_name=f"kave-idle-{uuid.uuid4().hex[:8]}",
    )
    headers = {
        k: str(v)
        for k, v in captured["request_headers"].items()
        if k in ("X-Mandrill-Signature", "Content-Type", "User-Agent")
    }
    with TestClient(create_app(settings)) as client:
        response = client.post(WEBHOOK_PATH, content=captured["raw_body"], headers=headers)
    assert response.status_code == 200, response.text


def test_not_form_encoded_is_415(client: TestClient) -> None:
    body, headers = signed_form(fixture_events("inbound.json"))
    headers["Content-Type"] = "application/json"
    response = client.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["message"]


def test_form_without_mandrill_events_is_400(client: TestClient) -> None:
    # Signed (a missing header is refused before the body is read): the form is checked
    # before the signature.
    response = client.post(
        WEBHOOK_PATH,
        content=b"something=else",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Mandrill-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        },
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "message": "the form has no mandrill_events field",
        "errors": [],
    }


def test_body_over_the_cap_is_413(base_settings: Settings, redis_client: redis.Redis) -> None:
    small_cap = derive_settings(
        base_settings, max_body_bytes=1000, queue_name=f"kave-idle-{uuid.uuid4().hex[:8]}"
    )
    body, headers = signed_form(fixture_events("inbound.json"))
    assert len(body) > 1000
    with TestClient(create_app(small_cap)) as client:
        declared = client.post(WEBHOOK_PATH, content=body, headers=headers)

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while reading
            for start in range(0, len(body), 256):
                yield body[start : start + 256]

        streamed = client.post(WEBHOOK_PATH, content=chunks(), headers=headers)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "KAVE_MAX_BODY_BYTES" in response.json()["message"]
    assert queued(redis_client, small_cap) == []


def test_large_body_goes_through_the_claim_check(
    client: TestClient,
    idle_settings: Settings,
    redis_client: redis.Redis,
    object_store: S3ObjectStore,
) -> None:
    """A 10 MB batch: the body goes to the object store, Redis holds a small pointer."""
    events = json.loads(fixture_events("inbound.json"))
    events[0]["msg"]["text"] = "x" * (10 * 1024 * 1024)
    body, headers = signed_form(json.dumps(events))
    assert len(body) > 10 * 1024 * 1024
    response = client.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 200
    (message,) = queued(redis_client, idle_settings)
    assert len(message) < 4096
    envelope = task_kwargs(message)["envelope"]
    delivery_id = response.json()["delivery_id"]
    assert redis_client.exists(f"kave:payload:{delivery_id}") == 0
    key = archive_object_key(hashlib.sha256(body).hexdigest())
    assert object_store.get(key) == body
    assert envelope["payload_store"] == "object"
    assert envelope["payload_key"] == key


@pytest.fixture
def stoppable_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


def test_redis_down_answers_503_within_two_seconds(
    base_settings: Settings, stoppable_redis: EmbeddedRedis
) -> None:
    settings = derive_settings(
        base_settings, redis_url=f"redis://127.0.0.1:{stoppable_redis.port}/0"
    )
    body, headers = signed_form(fixture_events("inbound.json"))
    with TestClient(create_app(settings)) as client:
        assert client.post(WEBHOOK_PATH, content=body, headers=headers).status_code == 200
        stoppable_redis.stop()
        started = time.monotonic()
        response = client.post(WEBHOOK_PATH, content=body, headers=headers)
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "Mandrill will retry" in response.json()["message"]
    assert elapsed < 2.0
