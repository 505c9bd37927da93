"""/metrics is served on the receiver's port behind KAVE_METRICS_TOKEN, over the real app."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from receiver.app import create_app
from shared.settings import Settings
from tests.services import derive_settings

TOKEN = "m3Tr1cs-t0ken-f0r-Pr0metheus-0nly-42"


@pytest.fixture
def client(base_settings: Settings) -> Iterator[TestClient]:
    settings = derive_settings(
        base_settings, metrics_token=TOKEN, queue_name=f"kave-idle-{uuid.uuid4().hex[:8]}"
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", "Bearer é"],
)
def test_metrics_without_the_token_is_401(client: TestClient, authorization: str | None) -> None:
    # As bytes: a client may send any byte, UTF-8 included.
    headers = {"Authorization": authorization.encode("utf-8")} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "KAVE_METRICS_TOKEN" in response.json()["message"]
    assert TOKEN not in response.text
    assert "kave_receiver_requests_total" not in response.text


def test_metrics_with_the_token_serves_the_receiver_series(client: TestClient) -> None:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "kave_receiver_requests_total" in response.text
    # The backlog gauges are the management API's: the public receiver queries nothing.
    assert "kave_queue_depth" not in response.text


def test_without_a_token_metrics_is_open_outside_production(base_settings: Settings) -> None:
    assert base_settings.metrics_token is None
    with TestClient(create_app(base_settings)) as client:
        assert client.get("/metrics").status_code == 200
