"""The API, Celery beat and Flower as processes on Redis Sentinel, and the API through a
failover.

One primary, one replica and three ``redis-server --sentinel`` (loadkit.redis_topology)
for the module; every process is configured as production would be, with
``KAVE_REDIS_SENTINELS`` and ``KAVE_REDIS_SENTINEL_MASTER`` and a ``KAVE_REDIS_URL``
whose host nobody resolves and whose database is not 0. The first Sentinel listed is
down throughout, as one of three may be. The receiver and the workers through a
failover are covered by tests/fault/test_sentinel_failover.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from loadkit.redis_topology import MASTER_NAME, Topology, sentinel_topology
from shared.db import make_engine
from shared.migrate import upgrade_to_head
from shared.redis_connect import async_redis_client, redis_client
from shared.settings import Settings
from tests import services
from tests.ops.redis_processes import (
    ApiUnderTest,
    api_settings,
    assert_api_uses_redis,
    assert_beat_worker_and_flower,
    get_token,
    make_operator,
    publish,
)
from tests.services import derive_settings, wait_until

DATABASE = 3  # not Redis's default, so that a client that ignores it is seen


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with sentinel_topology(tmp_path_factory.mktemp("sentinel-processes")) as topology:
        # The first Sentinel every process is told of is down, as one of three may be:
        # each client must ask the next (the other two still make a quorum).
        topology.sentinels[0].stop()
        yield topology


@pytest.fixture(scope="module")
def sentinel_settings(
    base_settings: Settings, postgres_admin_url: str, topology: Topology
) -> Iterator[Settings]:
    """The session's services but Redis, a database of the module's own (beat's
    reconciliation reads every delivery: other tests' rows are none of its business)."""
    with services.fresh_database(postgres_admin_url) as url:
        upgrade_to_head(url)
        yield derive_settings(
            base_settings,
            database_url=url,
            # Only the database counts (not 0, as Redis's defaults would): the
            # Sentinels name the primary.
            redis_url=f"redis://{MASTER_NAME}/{DATABASE}",
            redis_sentinels=topology.sentinel_addresses,
            redis_sentinel_master=MASTER_NAME,
            queue_name=f"kave-sentinel-{uuid.uuid4().hex[:8]}",
        )


@pytest.fixture(scope="module")
def sentinel_engine(sentinel_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(sentinel_settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def api(
    sentinel_settings: Settings,
    sentinel_engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiUnderTest]:
    settings = api_settings(sentinel_settings)
    log_path = tmp_path_factory.mktemp("sentinel-api") / "api.log"
    with services.api_process(settings, log_path) as base:
        token = get_token(base, *make_operator(sentinel_engine))
        yield ApiUnderTest(base, settings, sentinel_engine, token)


def primary(topology: Topology) -> redis.Redis:
    return redis.Redis("127.0.0.1", topology.current_primary().port, db=DATABASE)


def test_the_api_finds_the_primary_through_sentinel(api: ApiUnderTest, topology: Topology) -> None:
    assert_api_uses_redis(api, primary(topology))


def test_the_api_serves_again_once_sentinel_promotes_the_replica(
    api: ApiUnderTest, topology: Topology
) -> None:
    old = topology.current_primary()
    try:
        old.kill()
        # Until the Sentinels agree the primary is gone (a second at least), Redis is
        # unreachable for the API, and readiness says so.
        down = api.readyz()
        assert down.status_code == 503, down.text
        assert down.json()["failing"] == ["redis"]
        wait_until(
            lambda: topology.sentinel_primary_port() not in (None, old.port), 30, "promotion"
        )
        wait_until(lambda: api.readyz().status_code == 200, 30, "the API ready after failover")
        # Rate limits, a replay and the gauges on the promoted replica, with no restart.
        assert_api_uses_redis(api, primary(topology))
    finally:
        # Back, to become a replica of the new primary once the Sentinels reconfigure
        # it (clients meanwhile ask them, never it); no other test needs the replica.
        old.start()


@contextmanager
def hanging_up_sentinel() -> Iterator[tuple[str, list[int]]]:
    """An address that accepts connections and closes them at once, as a Sentinel host
    that is going down may; and the count of connections it took."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = [0]

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            accepted[0] += 1
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone would not)
        listener.close()
        thread.join(timeout=5)


def test_a_sentinel_that_does_not_answer_is_asked_once_not_retried(
    sentinel_settings: Settings, topology: Topology
) -> None:
    """redis-py's default retries (with backoff from a second up) made a Sentinel that
    hangs up or refuses cost every new connection of every process 3 to 5 s and 11
    attempts on it, before the next Sentinel was asked."""
    with hanging_up_sentinel() as (address, accepted):
        settings = derive_settings(
            sentinel_settings,
            redis_sentinels=[address, *topology.sentinel_addresses[1:]],
            queue_name=f"kave-unconsumed-{uuid.uuid4().hex[:8]}",
        )
        redis_client(settings, socket_timeout=2).ping()
        assert accepted == [1]

        async def ping() -> None:
            client = async_redis_client(settings, socket_timeout=2)
            await client.ping()
            await client.aclose()

        asyncio.run(ping())
        assert accepted == [2]
        publish(settings, 1)
        # kombu looks the primary up for each connection it opens (two for a publish).
        assert accepted[0] <= 4


def test_beat_publishes_a_worker_runs_and_flower_lists_them(
    sentinel_settings: Settings, topology: Topology, tmp_path: Path
) -> None:
    assert_beat_worker_and_flower(sentinel_settings, primary(topology), tmp_path)
