"""The small parts behind /metrics and /readyz, without services."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from receiver.metrics import MetricsMiddleware, ReceiverMetrics, webhook_outcome
from shared.web.probes import BlockingProbe
from tests.ops.support import value
from worker import metrics as worker_metrics


def test_a_hanging_check_holds_one_thread_and_later_callers_wait_for_it() -> None:
    release = threading.Event()
    started: list[int] = []
    probe = BlockingProbe("test")

    def hanging() -> str:
        started.append(1)
        release.wait(10)
        return "late"

    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            await probe.run(hanging, timeout=0.05)
        with pytest.raises(TimeoutError):  # joins the hanging check, starts none
            await probe.run(lambda: "new", timeout=0.05)
        assert len(started) == 1
        release.set()
        assert await probe.run(lambda: "new", timeout=5) == "late"
        assert await probe.run(lambda: "new", timeout=5) == "new"
        with pytest.raises(ZeroDivisionError):
            await probe.run(lambda: 1 / 0, timeout=5)
        # Two callers at once share one check.
        results = await asyncio.gather(
            probe.run(lambda: started.append(1) or "shared", timeout=5),
            probe.run(lambda: started.append(1) or "other", timeout=5),
        )
        assert results == ["shared", "shared"]
        assert len(started) == 2

    asyncio.run(scenario())


def test_requests_are_labelled_by_route_template_never_by_raw_path() -> None:
    router = APIRouter(prefix="/things")

    @router.get("/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app = FastAPI()
    metrics = ReceiverMetrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics, webhook_path="/hook")
    app.include_router(router, prefix="/api/v1")
    client = TestClient(app)
    for path in ("/api/v1/things/1", "/api/v1/things/2", "/api/v1/things/x", "/nowhere/7"):
        client.get(path)
    text = generate_latest(metrics.registry).decode()
    assert (
        value(
            text,
            "kave_receiver_requests_total",
            route="/api/v1/things/{thing_id}",
            status_class="2xx",
        )
        == 2
    )
    assert value(text, "kave_receiver_requests_total", route="/api/v1/things/{thing_id}") == 3
    assert value(text, "kave_receiver_requests_total", route="unmatched", status_class="4xx") == 1
    assert "/api/v1/things/1" not in text


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "accepted"), (401, "rejected"), (413, "rejected"), (503, "unavailable"), (500, "error")],
)
def test_webhook_outcomes(status: int, outcome: str) -> None:
    assert webhook_outcome(status) == outcome


def test_worker_labels_come_from_fixed_sets() -> None:
    assert worker_metrics._kind("hard_bounce") == "hard_bounce"
    assert worker_metrics._kind("x" * 60) == "other"
    assert worker_metrics._kind(None) == "none"
