"""The API process's own request log and metrics, over a real uvicorn API process."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.ops.support import json_lines, scrape, value
from tests.services import wait_until


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
