"""Fixtures of the worker's in-process tests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest


@pytest.fixture
def uploads() -> Iterator[ThreadPoolExecutor]:
    """Upload threads, as a worker on S3 has them (``worker.resources``)."""
    pool = ThreadPoolExecutor(max_workers=8)
    yield pool
    pool.shutdown()
