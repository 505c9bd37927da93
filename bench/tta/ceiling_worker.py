"""The time-to-agent ceiling: a delivery task that hands a stub to the agent, nothing else.

The same broker, Celery configuration and worker command line (beat included) as Kave's
worker, consuming the receiver's queue under Kave's delivery task name, so the receiver,
Flower and the queue are exactly those of Kave's stack. The task reads the batch's body
from Redis (the receiver put it there), drops it with its ledger entry (as a finished
delivery does, so reconciliation never queues it again), and POSTs a stub document
naming the delivery, signed the Standard Webhooks way, on a kept connection pool as
Kave's hand-off does. No parse, no store, no database.

    celery -A bench.tta.ceiling_worker worker -Q <queue> -B ...
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any

import urllib3
from celery import Celery
from redis import Redis

from bench.tta.handler import HANDLER_URL_ENV, SECRET_ENV
from shared.accepted import AcceptedLedger
from shared.contract import PROCESS_DELIVERY_TASK, Envelope
from shared.queue import celery_config
from shared.settings import get_settings
from worker.handoff.http import sign

settings = get_settings()
app = Celery("kave-tta-ceiling")
app.conf.update(celery_config(settings))
# Beat runs (as in Kave's stack) but has nothing of Kave's to send: its tasks are not here.
app.conf.beat_schedule = {}


@cache
def _redis() -> Redis:
    return Redis.from_url(settings.require_redis_url())


@cache
def _pool() -> urllib3.PoolManager:
    return urllib3.PoolManager(num_pools=4, maxsize=2, retries=False)


@cache
def _key() -> bytes:
    import base64

    secret = os.environ[SECRET_ENV]
    return base64.b64decode(secret.removeprefix("whsec_") + "==")


@app.task(name=PROCESS_DELIVERY_TASK)
def stub_delivery(envelope: dict[str, Any]) -> None:
    parsed = Envelope.from_message(envelope)
    keys = AcceptedLedger(settings.queue_name).receiver_keys(parsed.delivery_id)
    pipe = _redis().pipeline()
    pipe.get(keys[0])
    pipe.delete(*keys)
    body_size = len(pipe.execute()[0] or b"")
    stub = {
        "type": "email.received",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"delivery_id": parsed.delivery_id, "body_size": body_size},
    }
    document = json.dumps(stub, separators=(",", ":")).encode()
    timestamp = int(time.time())
    _pool().request(
        "POST",
        os.environ[HANDLER_URL_ENV],
        body=document,
        headers={
            "content-type": "application/json",
            "webhook-id": parsed.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(_key(), parsed.delivery_id, timestamp, document),
        },
        timeout=urllib3.Timeout(connect=5.0, read=5.0),
        retries=False,
        redirect=False,
    )
