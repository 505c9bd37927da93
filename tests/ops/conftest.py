"""Fixtures of the operations tests: receivers and workers of their own, on a queue and
a database of their own, so that their counts and metrics are theirs alone (the
session's worker, and whatever earlier tests left behind, cannot touch them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from shared.db import make_engine
from shared.migrate import upgrade_to_head
from shared.settings import Settings
from tests import services
from tests.services import derive_settings


@pytest.fixture
def own_queue_settings(base_settings: Settings) -> Settings:
    """The session's services, a queue nobody else consumes."""
    return derive_settings(base_settings, queue_name=f"kave-ops-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def isolated_settings(postgres_admin_url: str, own_queue_settings: Settings) -> Iterator[Settings]:
    """A queue and a freshly migrated database of this test's own."""
    with services.fresh_database(postgres_admin_url) as url:
        upgrade_to_head(url)
        yield derive_settings(own_queue_settings, database_url=url)


@pytest.fixture
def isolated_engine(isolated_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(isolated_settings)
    yield engine
    engine.dispose()
