"""The receiver's one rate limit, over the real app and the real Redis that every
replica shares: webhook POSTs that fail the signature check, per client."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from receiver.app import create_app
from shared.settings import Settings
from tests.services import derive_settings
from tests.webhooks import WEBHOOK_PATH, fixture_events, signed_form

UNTRUSTED_PEER = ("198.51.100.7", 50000)


def _assert_429(response: Any, *, window: int = 60) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    body = response.json()
    assert body["status"] == "error"
    assert f"retry in {retry_after} s" in body["message"]


@pytest.fixture
def limited(base_settings: Settings) -> Settings:
    # A queue of the test's own: rate-limit buckets live under the queue name, so every
    # test starts with empty ones.
    return derive_settings(
        base_settings,
        queue_name=f"kave-limit-{uuid.uuid4().hex[:8]}",
        rate_limit_webhook_signature_failures="2/minute",
        trusted_proxies="10.0.0.0/8",
    )


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(settings: Settings, **kwargs: Any) -> TestClient:
        client = TestClient(create_app(settings), **kwargs)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_bad_signatures_turn_into_429_but_signed_batches_still_pass(
    make_client: Callable[..., TestClient], limited: Settings
) -> None:
    client = make_client(limited)
    body, headers = signed_form(fixture_events("send.json"))
    forged = {**headers, "X-Mandrill-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    for _ in range(2):
        assert client.post(WEBHOOK_PATH, content=body, headers=forged).status_code == 401
    _assert_429(client.post(WEBHOOK_PATH, content=body, headers=forged))
    # A correctly signed batch from the same client is never limited.
    accepted = client.post(WEBHOOK_PATH, content=body, headers=headers)
    assert accepted.status_code == 200
    assert accepted.json()["status"] == "accepted"
    # Other clients are not affected, and other errors (415) are not counted or replaced.
    other = make_client(limited, client=UNTRUSTED_PEER)
    assert other.post(WEBHOOK_PATH, content=body, headers=forged).status_code == 401
    assert client.post(WEBHOOK_PATH, content=b"x", headers={}).status_code == 415


def test_signed_batches_are_not_counted(
    make_client: Callable[..., TestClient], limited: Settings
) -> None:
    client = make_client(limited)
    body, headers = signed_form(fixture_events("send.json"))
    for _ in range(4):
        assert client.post(WEBHOOK_PATH, content=body, headers=headers).status_code == 200
    forged = {**headers, "X-Mandrill-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    assert client.post(WEBHOOK_PATH, content=body, headers=forged).status_code == 401
