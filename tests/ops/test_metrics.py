"""Prometheus metrics of a real receiver, a real management API (the backlog) and a real
worker node, before and after."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from shared.settings import Settings
from tests.ops.support import (
    events_json,
    family_names,
    json_lines,
    sample,
    scrape,
    unique_inbound,
    unique_open,
    value,
)
from tests.services import (
    api_process,
    derive_settings,
    free_port,
    receiver_process,
    wait_until,
    worker_process,
)
from tests.webhooks import WEBHOOK_PATH, fixture_events, post_events, wait_for_deliveries

RECEIVER_FAMILIES = {
    "kave_receiver_requests",
    "kave_receiver_request_duration_seconds",
    "kave_receiver_webhook_requests",
    "kave_receiver_signature_failures",
    "kave_receiver_enqueue_duration_seconds",
    "kave_receiver_body_size_bytes",
}
API_FAMILIES = {
    "kave_api_requests",
    "kave_api_request_duration_seconds",
    "kave_queue_depth",
    "kave_queue_unacked",
    "kave_deliveries_unfinished",
    "kave_oldest_unfinished_delivery_age_seconds",
    "kave_dead_letters_open",
    "kave_api_metrics_source_up",
}
WORKER_FAMILIES = {
    "kave_worker_tasks",
    "kave_worker_task_duration_seconds",
    "kave_worker_events",
    "kave_worker_dead_letters",
    "kave_worker_delivery_lag_seconds",
}
TASK = "kave.delivery.process"


@dataclass(frozen=True)
class Stack:
    settings: Settings
    receiver: str
    api: str
    worker_metrics: str
    dir: Path


@pytest.fixture
def stack(isolated_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """A receiver and an API on a queue and a database of their own; the test starts the
    worker node when it wants."""
    port = free_port()
    settings = derive_settings(isolated_settings, worker_metrics_port=port)
    with (
        receiver_process(settings, tmp_path / "receiver.log") as receiver,
        api_process(settings, tmp_path / "api.log") as api,
    ):
        yield Stack(settings, receiver, api, f"http://127.0.0.1:{port}/metrics", tmp_path)


def test_receiver_and_worker_metrics_change_when_webhooks_are_processed(
    stack: Stack, isolated_engine: Engine
) -> None:
    metrics_url = stack.receiver + "/metrics"
    backlog_url = stack.api + "/metrics"
    before = scrape(metrics_url)
    assert family_names(before) >= RECEIVER_FAMILIES
    backlog_before = scrape(backlog_url)
    assert family_names(backlog_before) >= API_FAMILIES
    queue = stack.settings.queue_name
    assert sample(backlog_before, "kave_queue_depth", queue=queue) == 0
    assert sample(backlog_before, "kave_oldest_unfinished_delivery_age_seconds") == 0
    assert sample(backlog_before, "kave_dead_letters_open") == 0

    # Two accepted batches (one with an event that can only dead-letter), a wrong and a
    # missing signature. No worker runs yet: the batches wait in the queue.
    good = post_events(stack.receiver, events_json([unique_inbound(), unique_open()]))
    poison = [unique_open(), *json.loads(fixture_events("inbound_without_msg.json"))]
    with_dead_letter = post_events(stack.receiver, events_json(poison))
    assert (good.status_code, with_dead_letter.status_code) == (200, 200)
    assert post_events(stack.receiver, "[]", key="wrong-key").status_code == 401
    unsigned = httpx.post(
        stack.receiver + WEBHOOK_PATH,
        content=b"mandrill_events=%5B%5D",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert unsigned.status_code == 401
    time.sleep(0.2)

    queued = scrape(metrics_url)
    backlog = scrape(backlog_url)
    assert sample(backlog, "kave_queue_depth", queue=queue) == 2
    assert value(backlog, "kave_oldest_unfinished_delivery_age_seconds") >= 0.2
    accepted = value(queued, "kave_receiver_webhook_requests_total", outcome="accepted")
    assert accepted - value(before, "kave_receiver_webhook_requests_total", outcome="accepted") == 2
    assert (
        value(queued, "kave_receiver_webhook_requests_total", outcome="rejected", status="401") == 2
    )
    assert value(queued, "kave_receiver_signature_failures_total", reason="mismatch") == 1
    assert value(queued, "kave_receiver_signature_failures_total", reason="missing") == 1
    assert value(queued, "kave_receiver_body_size_bytes_count") == 2
    assert value(queued, "kave_receiver_body_size_bytes_sum") == len(good.request.content) + len(
        with_dead_letter.request.content
    )
    assert value(queued, "kave_receiver_enqueue_duration_seconds_count", outcome="ok") == 2
    assert (
        value(
            queued,
            "kave_receiver_requests_total",
            route="/api/v1/webhooks/mailchimp",
            method="POST",
            status_class="2xx",
        )
        == 2
    )

    delivery_ids = [good.json()["delivery_id"], with_dead_letter.json()["delivery_id"]]
    with worker_process(stack.settings, stack.dir / "worker.log"):
        wait_for_deliveries(isolated_engine, delivery_ids)

        def worker_scrape() -> str:
            return scrape(stack.worker_metrics)

        # The task counter moves when the task returns, just after the last write.
        wait_until(
            lambda: (
                value(worker_scrape(), "kave_worker_tasks_total", task=TASK, state="SUCCESS") == 2
            ),
            10,
            "the worker's task counter",
        )
        worker = worker_scrape()
    assert family_names(worker) >= WORKER_FAMILIES
    assert value(worker, "kave_worker_events_total", kind="inbound", outcome="stored") == 1
    assert value(worker, "kave_worker_events_total", kind="open", outcome="stored") == 2
    assert value(worker, "kave_worker_events_total", kind="inbound", outcome="failed") == 1
    assert (
        value(worker, "kave_worker_dead_letters_total", scope="event", error_class="invalid_event")
        == 1
    )
    assert value(worker, "kave_worker_task_duration_seconds_count", task=TASK) == 2
    assert value(worker, "kave_worker_delivery_lag_seconds_count") == 2
    assert value(worker, "kave_worker_delivery_lag_seconds_sum") >= 0.4

    after = scrape(backlog_url)
    assert sample(after, "kave_queue_depth", queue=queue) == 0
    assert sample(after, "kave_deliveries_unfinished") == 0
    assert sample(after, "kave_oldest_unfinished_delivery_age_seconds") == 0
    assert sample(after, "kave_dead_letters_open") == 1

    serving = [
        line
        for line in json_lines(stack.dir / "worker.log")
        if line["event"] == "worker.metrics_serving"
    ]
    assert len(serving) == 1


def test_worker_metrics_count_retries_of_a_failing_service(stack: Stack) -> None:
    # The worker cannot reach PostgreSQL (nothing listens there): a transient failure.
    nowhere = f"postgresql+psycopg://kave:pw@127.0.0.1:{free_port()}/kave"
    broken = derive_settings(stack.settings, database_url=nowhere)
    response = post_events(stack.receiver, events_json([unique_open()]))
    assert response.status_code == 200
    with worker_process(broken, stack.dir / "worker.log"):

        def retries() -> float:
            return value(
                scrape(stack.worker_metrics),
                "kave_worker_task_retries_total",
                task=TASK,
                error_type="OperationalError",
            )

        wait_until(lambda: retries() >= 1, 20, "a counted retry")
        text = scrape(stack.worker_metrics)
    assert value(text, "kave_worker_tasks_total", task=TASK, state="RETRY") >= 1
    retrying = [
        line
        for line in json_lines(stack.dir / "worker.log")
        if line["event"] == "delivery.retrying"
    ]
    assert retrying
    assert retrying[0]["delivery_id"] == response.json()["delivery_id"]
