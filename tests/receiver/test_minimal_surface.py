"""The receiver serves the webhook and its probes, nothing of the management API; the
API, a process of its own, serves that. Both over real uvicorn processes."""

from __future__ import annotations

import httpx
import pytest

from shared.settings import MANDRILL_TEST_KEY
from tests.webhooks import WEBHOOK_PATH, fixture_events, post_events

MANAGEMENT = [
    ("GET", "/api/v1/docs"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/api/v1/emails"),
    ("GET", "/api/v1/dead-letters"),
    ("POST", "/api/v1/auth/token"),
]


@pytest.mark.parametrize(("method", "path"), MANAGEMENT)
def test_the_receiver_does_not_serve_the_management_api(
    receiver: str, method: str, path: str
) -> None:
    response = httpx.request(
        method, receiver + path, data={"username": "ops", "password": "x"}, timeout=10
    )
    assert response.status_code == 404, response.text


def test_the_receiver_still_takes_webhooks_and_answers_its_probes(receiver: str) -> None:
    assert httpx.head(receiver + WEBHOOK_PATH, timeout=10).status_code == 200
    # Mandrill's URL validation batch: signed, verified and answered, but nothing queued
    # on the session's queue for other tests' workers to find.
    response = post_events(receiver, "[]", key=MANDRILL_TEST_KEY)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "delivery_id": None}
    forged = post_events(receiver, fixture_events("send.json"), key="not-the-key")
    assert forged.status_code == 401
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(receiver + probe, timeout=10).status_code == 200, probe


def test_the_api_serves_what_the_receiver_does_not(api: str) -> None:
    assert httpx.get(api + "/api/v1/openapi.json", timeout=10).status_code == 200
    assert httpx.get(api + "/api/v1/docs", timeout=10).status_code == 200
    assert httpx.get(api + "/api/v1/emails", timeout=10).status_code == 401
    assert httpx.get(api + "/readyz", timeout=10).json() == {"status": "ok", "failing": []}
    # And no webhook: Mandrill never reaches this process.
    assert httpx.head(api + WEBHOOK_PATH, timeout=10).status_code == 404
