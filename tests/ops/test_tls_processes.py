"""The API, Celery beat and Flower as processes on a Redis that speaks TLS only.

A ``redis-server --tls-port --port 0`` with a certificate from a CA made for the module
(loadkit.redis_topology); every process is configured with ``rediss://`` and
``KAVE_REDIS_TLS_CA_FILE``. An API that trusts another CA is refused by the server's
certificate and says Redis is not ready. The receiver, a worker and the CLI are covered
by tests/ops/test_redis_tls.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine

from loadkit.redis_topology import RedisNode, TlsFiles, make_tls_files, tls_only_server
from shared.db import make_engine
from shared.migrate import upgrade_to_head
from shared.settings import Settings
from tests import services
from tests.ops.redis_processes import (
    ApiUnderTest,
    api_settings,
    assert_api_uses_redis,
    assert_beat_worker_and_flower,
    get_token,
    make_operator,
)
from tests.ops.support import sample, scrape
from tests.services import derive_settings

DATABASE = 3  # not Redis's default, so that a client that ignores it is seen


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TlsFiles, RedisNode]]:
    root = tmp_path_factory.mktemp("tls-processes")
    files = make_tls_files(root / "certificates")
    with tls_only_server(root, files) as node:
        yield files, node


@pytest.fixture(scope="module")
def tls_settings(
    base_settings: Settings, postgres_admin_url: str, tls: tuple[TlsFiles, RedisNode]
) -> Iterator[Settings]:
    """The session's services but Redis, a database of the module's own (beat's
    reconciliation reads every delivery: other tests' rows are none of its business)."""
    files, node = tls
    with services.fresh_database(postgres_admin_url) as url:
        upgrade_to_head(url)
        yield derive_settings(
            base_settings,
            database_url=url,
            redis_url=f"rediss://127.0.0.1:{node.port}/{DATABASE}",
            redis_tls_ca_file=files.ca,
            queue_name=f"kave-tls-{uuid.uuid4().hex[:8]}",
        )


@pytest.fixture(scope="module")
def tls_engine(tls_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(tls_settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def api(
    tls_settings: Settings, tls_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiUnderTest]:
    settings = api_settings(tls_settings)
    log_path = tmp_path_factory.mktemp("tls-api") / "api.log"
    with services.api_process(settings, log_path) as base:
        token = get_token(base, *make_operator(tls_engine))
        yield ApiUnderTest(base, settings, tls_engine, token)


def database(node: RedisNode) -> redis.Redis:
    return redis.Redis("127.0.0.1", node.port, db=DATABASE, **node.client_options)


def test_the_api_on_a_tls_only_redis(api: ApiUnderTest, tls: tuple[TlsFiles, RedisNode]) -> None:
    _, node = tls
    assert_api_uses_redis(api, database(node))


def test_an_api_that_does_not_trust_the_servers_ca_is_not_ready(
    tls_settings: Settings, tmp_path: Path
) -> None:
    # A CA of its own, which never signed the server's certificate.
    stranger = make_tls_files(tmp_path / "another-ca")
    settings = derive_settings(api_settings(tls_settings), redis_tls_ca_file=stranger.ca)
    log_path = tmp_path / "api.log"
    with services.api_process(settings, log_path) as base:
        ready = httpx.get(base + "/readyz", timeout=10)
        assert ready.status_code == 503, ready.text
        assert ready.json()["failing"] == ["redis"]
        # The rate limits refuse rather than let requests through unlimited.
        refused = httpx.post(
            base + "/api/v1/auth/token", data={"username": "ops", "password": "x"}, timeout=10
        )
        assert refused.status_code == 503, refused.text
        metrics = scrape(base + "/metrics")
        assert sample(metrics, "kave_api_metrics_source_up", source="redis") == 0
        assert sample(metrics, "kave_api_metrics_source_up", source="postgresql") == 1


def test_beat_publishes_a_worker_runs_and_flower_lists_them(
    tls_settings: Settings, tls: tuple[TlsFiles, RedisNode], tmp_path: Path
) -> None:
    _, node = tls
    assert_beat_worker_and_flower(tls_settings, database(node), tmp_path)
