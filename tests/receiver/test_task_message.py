"""The receiver's task message is the one Celery's send_task sends (real Redis)."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from receiver.task_message import TaskSender
from shared.contract import PROCESS_DELIVERY_TASK
from shared.queue import make_producer
from shared.settings import Settings

OPTIONS: dict[str, Any] = {
    "kwargs": {"envelope": {"delivery_id": "d-1", "version": 1}},
    "argsrepr": "()",
    "kwargsrepr": "delivery_id=d-1 size=10",
    "headers": {"request_id": "req-1"},
}


def _comparable(raw: bytes) -> dict[str, Any]:
    """A message from the queue, without what differs per message or per sender."""
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    headers, properties = message["headers"], message["properties"]
    task_id = headers.pop("id")
    assert headers.pop("root_id") == task_id
    assert properties.pop("correlation_id") == task_id
    properties.pop("delivery_tag")
    headers.pop("origin")  # host and pid
    return message


def test_the_message_is_the_one_send_task_sends(
    receiver_settings: Settings, redis_client: redis.Redis
) -> None:
    celery = make_producer(receiver_settings, "kave-test-task-message")
    try:
        with celery.producer_or_acquire() as producer:
            celery.send_task(PROCESS_DELIVERY_TASK, retry=False, producer=producer, **OPTIONS)
            TaskSender(celery, PROCESS_DELIVERY_TASK).send(producer, **OPTIONS)
    finally:
        celery.close()
    queued = redis_client.lrange(receiver_settings.queue_name, 0, -1)
    assert len(queued) == 2
    by_send_task, by_sender = (_comparable(raw) for raw in reversed(queued))  # LPUSH
    assert by_sender == by_send_task
    assert by_sender["headers"]["task"] == PROCESS_DELIVERY_TASK
    assert by_sender["headers"]["request_id"] == "req-1"
    assert by_sender["properties"]["kwargsrepr"] == "delivery_id=d-1 size=10"
    assert by_sender["body"][1] == OPTIONS["kwargs"]
    redis_client.delete(receiver_settings.queue_name)
