"""The API process's own request log and metrics, over a real uvicorn API process."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from shared.settings import Settings
from tests.ops.support import json_lines, scrape, value
from tests.services import derive_settings, wait_until


def test_requests_are_logged_and_counted_by_route_template(api: str, service_dir: Path) -> None:
    request_id = f"test-{uuid.uuid4().hex}"
    before = scrape(api + "/metrics")
    response = httpx.get(
        api + "/api/v1/emails/12345", headers={"X-Request-ID": request_id}, timeout=10
    )
    assert response.status_code == 401  # no token: refused before any query
    after = scrape(api + "/metrics")

    route = "/api/v1/emails/{email_id}"
    labels = {"route": route, "method": "GET", "status_class": "4xx"}
    assert (
        value(after, "kave_api_requests_total", **labels)
        - value(before, "kave_api_requests_total", **labels)
        == 1
    )
    assert value(after, "kave_api_request_duration_seconds_count", route=route) >= 1
    assert "/api/v1/emails/12345" not in after

    def finished() -> list[dict[str, object]]:
        return [
            line
            for line in json_lines(service_dir / "api.log")
            if line.get("event") == "request.finished" and line.get("request_id") == request_id
        ]

    wait_until(lambda: bool(finished()), 10, "the API's request.finished line")
    (line,) = finished()
    assert (line["route"], line["status"], line["process"]) == (route, 401, "api")


def test_the_api_serves_the_alerting_gauges(api: str, base_settings: Settings) -> None:
    # The collector of api/pipeline_metrics.py is wired into the API's registry: the
    # threshold comes from settings and the queue-age series names the session's queue.
    text = scrape(api + "/metrics")
    assert (
        value(text, "kave_inbound_silence_threshold_seconds")
        == base_settings.inbound_silence_alert_seconds
    )
    assert value(text, "kave_api_metrics_source_up", source="postgresql") == 1
    assert value(text, "kave_api_metrics_source_up", source="redis") == 1
    assert value(text, "kave_queue_oldest_task_age_seconds", queue=base_settings.queue_name) >= 0
    assert 'kave_inbound_last_email_age_seconds{domain="all"}' in text


def test_the_api_metrics_ask_for_the_metrics_token_when_it_is_set(
    make_client: Callable[..., TestClient], api_settings: Settings
) -> None:
    token = "Zq8Lr2Vn6Tx0Bc4Hm9Kp3Wd7Fs1Gj5Ya-api"
    client = make_client(derive_settings(api_settings, metrics_token=token))
    refused = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert "kave_queue_depth" not in refused.text
    assert token not in refused.text
    served = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert served.status_code == 200
    assert "kave_queue_depth" in served.text
