"""One webhook, followed through the receiver's and the worker's JSON logs by its ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from sqlalchemy import Engine

from shared.contract import PROCESS_DELIVERY_TASK
from shared.queue import celery_config
from shared.settings import Settings
from tests.ops.support import events_json, json_lines, unique_inbound, unique_open
from tests.services import TEST_WEBHOOK_KEY, wait_until
from tests.webhooks import WEBHOOK_PATH, signed_form, wait_for_deliveries

pytestmark = pytest.mark.usefixtures("worker", "clean_db")


@pytest.fixture
def producer(base_settings: Settings) -> Iterator[Celery]:
    app = Celery("ops-test-producer", set_as_current=False)
    app.conf.update(celery_config(base_settings))
    yield app
    app.close()


def _lines_with(path: Path, **ids: str) -> list[dict[str, Any]]:
    return [
        line
        for line in json_lines(path)
        if all(line.get(name) == value for name, value in ids.items())
    ]


def test_request_and_delivery_ids_follow_a_webhook_into_the_worker(
    receiver: str, engine: Engine, service_dir: Path
) -> None:
    request_id = f"ops-{uuid.uuid4().hex}"
    body, headers = signed_form(events_json([unique_inbound(), unique_open()]))
    response = httpx.post(
        receiver + WEBHOOK_PATH,
        content=body,
        headers={**headers, "X-Request-ID": request_id},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == request_id
    delivery_id = response.json()["delivery_id"]
    wait_for_deliveries(engine, [delivery_id])
    worker_log = service_dir / "worker.log"
    # Celery's "succeeded" line follows the delivery's last database write.
    wait_until(
        lambda: any(
            line["logger"] == "celery.app.trace"
            for line in _lines_with(worker_log, delivery_id=delivery_id)
        ),
        10,
        "Celery's line about the task",
    )

    # The receiver: the request's lines carry its id; the enqueue line names the delivery.
    receiver_lines = _lines_with(service_dir / "receiver.log", request_id=request_id)
    events = {line["event"]: line for line in receiver_lines}
    assert events["delivery.enqueued"]["delivery_id"] == delivery_id
    finished = events["request.finished"]
    assert (finished["route"], finished["status"]) == ("/api/v1/webhooks/mailchimp", 200)
    assert {line["process"] for line in receiver_lines} == {"receiver"}

    # The worker: every line about the delivery (ours, and Celery's own) carries the same
    # request id, the delivery id and one task id, in the main and the pool processes.
    worker_lines = _lines_with(worker_log, delivery_id=delivery_id)
    assert worker_lines
    for line in worker_lines:
        assert line["request_id"] == request_id, line
        assert line["process"] == "worker"
    task_ids = {line["task_id"] for line in worker_lines}
    assert len(task_ids) == 1
    (task_id,) = task_ids
    by_event = {line["event"]: line for line in worker_lines}
    assert by_event["task.received"]["task_name"] == PROCESS_DELIVERY_TASK
    assert by_event["delivery.processed"]["outcomes"] == {"stored": 2}
    celery_line = next(line for line in worker_lines if line["logger"] == "celery.app.trace")
    assert f"[{task_id}] succeeded" in celery_line["event"]
    # ... and no line of that task lacks them.
    for line in _lines_with(worker_log, task_id=task_id):
        assert (line.get("request_id"), line.get("delivery_id")) == (request_id, delivery_id)

    # Nothing of the payload or the key in either log.
    for path in (service_dir / "receiver.log", worker_log):
        text = path.read_text(errors="replace")
        assert TEST_WEBHOOK_KEY not in text
        assert "Received: from mail" not in text
        assert headers["X-Mandrill-Signature"] not in text


def test_the_request_id_travels_in_the_task_headers(producer: Celery, service_dir: Path) -> None:
    """A task whose envelope cannot be read still logs the request id of its headers."""
    request_id = f"ops-hdr-{uuid.uuid4().hex}"
    result = producer.send_task(
        PROCESS_DELIVERY_TASK,
        kwargs={"envelope": {"version": 0}},
        argsrepr="()",
        kwargsrepr="delivery_id=? size=0",
        headers={"request_id": request_id},
    )
    worker_log = service_dir / "worker.log"

    def bad_envelope() -> list[dict[str, Any]]:
        return [
            line
            for line in _lines_with(worker_log, task_id=result.id)
            if line["event"] == "delivery.bad_envelope"
        ]

    wait_until(lambda: bool(bad_envelope()), 20, "the bad envelope line")
    (line,) = bad_envelope()
    assert line["request_id"] == request_id
    assert line["level"] == "error"
    received = [
        line
        for line in _lines_with(worker_log, task_id=result.id)
        if line["event"] == "task.received"
    ]
    assert received[0]["request_id"] == request_id
