"""Fixtures of the receiver tests: the real receiver app on the session's services."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from receiver.app import create_app
from shared.settings import Settings
from tests.http_checks import app_clients
from tests.services import derive_settings


@pytest.fixture
def receiver_settings(base_settings: Settings) -> Settings:
    """The session settings with a queue of the test's own: the rate-limit buckets live
    under the queue name, so every test starts with empty ones."""
    return derive_settings(base_settings, queue_name=f"kave-receiver-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """Receiver apps over given settings, each started (lifespan) and closed after."""
    with app_clients(create_app) as make:
        yield make
