"""Fixtures over real services; see ``tests/services.py`` for how each one is found."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from shared.db import make_engine
from shared.migrate import upgrade_to_head
from shared.objectstore import S3ObjectStore, make_s3_client
from shared.settings import Settings
from tests import services
from tests.services import S3_BUCKET


def pytest_configure(config: pytest.Config) -> None:
    # Each test session flushes its Redis database: several sessions on the one that
    # KAVE_TEST_REDIS_URL names would wipe each other's queues.
    processes = getattr(config.option, "numprocesses", None)
    if os.environ.get("KAVE_TEST_REDIS_URL") and processes not in (None, 0, 1):
        raise pytest.UsageError(
            "KAVE_TEST_REDIS_URL names one Redis database, for one test process: "
            "make test TEST_PROCESSES=0, or pytest without -n"
        )


@pytest.fixture(scope="session")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with services.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A database of the test session, migrated to head."""
    with services.fresh_database(postgres_admin_url) as url:
        upgrade_to_head(url)
        yield url


@pytest.fixture(scope="session")
def redis_url(service_dir: Path) -> Iterator[str]:
    with services.redis_server(service_dir) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with services.s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def base_settings(database_url: str, redis_url: str, s3_endpoint: str) -> Settings:
    return services.pipeline_settings(
        database_url, redis_url, s3_endpoint, queue_name=f"kave-test-{uuid.uuid4().hex[:8]}"
    )


@pytest.fixture(scope="session")
def engine(base_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(base_settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def object_store(base_settings: Settings) -> S3ObjectStore:
    return S3ObjectStore(make_s3_client(base_settings), S3_BUCKET)


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def clean_db(engine: Engine) -> Engine:
    """Empty every table; the workers of a test commit, so rollbacks cannot isolate."""
    services.truncate_all(engine)
    return engine


@pytest.fixture(scope="session")
def worker(base_settings: Settings, service_dir: Path) -> Iterator[Path]:
    """A real Celery worker (prefork, two children) consuming the session's queue."""
    log_path = service_dir / "worker.log"
    with services.worker_process(base_settings, log_path):
        yield log_path


@pytest.fixture(scope="session")
def receiver(base_settings: Settings, service_dir: Path) -> Iterator[str]:
    """The base URL of a real uvicorn receiver."""
    with services.receiver_process(base_settings, service_dir / "receiver.log") as base:
        yield base


@pytest.fixture(scope="session")
def api(base_settings: Settings, service_dir: Path) -> Iterator[str]:
    """The base URL of a real uvicorn serving the management API."""
    with services.api_process(base_settings, service_dir / "api.log") as base:
        yield base
