"""HTTP helpers shared by the receiver and API tests: in-process app clients and the
rate-limit refusal both apps give."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.settings import Settings

UNTRUSTED_PEER = ("198.51.100.7", 50000)
PROXY_PEER = ("10.0.0.2", 50000)


def assert_rate_limited(response: httpx.Response, *, window: int = 60) -> None:
    """A 429 in the error format, whose Retry-After is within the window and is the one
    the message names."""
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    body = response.json()
    assert body["status"] == "error"
    assert f"retry in {retry_after} s" in body["message"]


@contextmanager
def app_clients(
    create_app: Callable[[Settings], FastAPI],
) -> Iterator[Callable[..., TestClient]]:
    """Makes started clients (lifespan run) of apps built by ``create_app``; closes them
    all on exit."""
    clients: list[TestClient] = []

    def make(settings: Settings, **kwargs: Any) -> TestClient:
        client = TestClient(create_app(settings), **kwargs)
        client.__enter__()
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.__exit__(None, None, None)
