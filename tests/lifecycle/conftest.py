"""Fixtures of the lifecycle tests: an empty bucket, the pipeline, the CLI as a process."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from shared.objectstore import S3ObjectStore
from shared.settings import Settings
from tests.services import derive_settings
from tests.webhooks import post_events, wait_for_deliveries


@pytest.fixture
def clean_store(object_store: S3ObjectStore) -> S3ObjectStore:
    """The session's bucket emptied: other tests leave objects no row names any more."""
    for found in list(object_store.list_objects()):
        object_store.delete(found.key)
    return object_store


@pytest.fixture
def clean(clean_db: Engine, clean_store: S3ObjectStore) -> Engine:
    return clean_db


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """No grace: everything in these tests is written seconds before it is checked."""
    return derive_settings(base_settings, orphan_grace_seconds=0)


def deliver(receiver: str, engine: Engine, events: str) -> str:
    response = post_events(receiver, events)
    assert response.status_code == 200, response.text
    delivery_id: str = response.json()["delivery_id"]
    wait_for_deliveries(engine, [delivery_id])
    return delivery_id
