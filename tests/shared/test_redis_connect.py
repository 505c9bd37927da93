"""shared.redis_connect: every Redis client and Celery's broker, from the settings.

The Sentinel clients and the Celery producer run against a real primary watched by a
real ``redis-server --sentinel``; what Celery is told (``sentinel://`` URLs, the master
name, TLS options) is checked as configuration too, since kombu reads it only on first
use.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from loadkit.redis_topology import MASTER_NAME, Topology, sentinel_topology
from shared.contract import RECONCILE_TASK
from shared.queue import celery_config, make_producer
from shared.redis_connect import async_redis_client, redis_client
from shared.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **{"env": "test", **values})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    root = tmp_path_factory.mktemp("sentinel")
    with sentinel_topology(root, replicas=0, sentinels=1) as topology:
        yield topology


def sentinel_settings(topology: Topology, **values: object) -> Settings:
    return settings(
        # The host is not used: the Sentinel names the primary.
        redis_url="redis://nowhere.invalid:1/3",
        redis_sentinels=",".join(topology.sentinel_addresses),
        redis_sentinel_master=MASTER_NAME,
        queue_name=f"kave-sentinel-{uuid.uuid4().hex[:6]}",
        **values,
    )


def test_clients_find_the_primary_through_sentinel(watched: Topology) -> None:
    configured = sentinel_settings(watched)
    key = f"kave-test:{uuid.uuid4().hex}"
    redis_client(configured, socket_timeout=2).set(key, b"sync")
    primary = redis.Redis("127.0.0.1", watched.primary.port, db=3)
    assert primary.get(key) == b"sync"

    async def write() -> None:
        client = async_redis_client(configured, socket_timeout=2)
        await client.set(key, b"async")
        await client.aclose()

    asyncio.run(write())
    assert primary.get(key) == b"async"


def test_the_celery_producer_publishes_through_sentinel(watched: Topology) -> None:
    configured = sentinel_settings(watched)
    producer = make_producer(configured, "kave-test-sentinel")
    try:
        producer.send_task(RECONCILE_TASK)
    finally:
        producer.close()
    primary = redis.Redis("127.0.0.1", watched.primary.port, db=3)
    assert primary.llen(configured.queue_name) == 1


def test_celery_is_told_the_sentinels_the_master_and_the_password() -> None:
    config = celery_config(
        settings(
            redis_url="redis://:s3cret-pass@ignored:6379/2",
            redis_sentinels="10.0.0.1:26379, sentinel-b:26380",
            redis_sentinel_master="kave-primary",
            redis_sentinel_password="sentinel-pass",
        )
    )
    assert config["broker_url"] == (
        "sentinel://:s3cret-pass@10.0.0.1:26379/2;sentinel://:s3cret-pass@sentinel-b:26380/2"
    )
    options = config["broker_transport_options"]
    assert options["master_name"] == "kave-primary"
    assert options["sentinel_kwargs"]["password"] == "sentinel-pass"
    assert options["visibility_timeout"] == 300  # the rest of the options stay
    assert "broker_use_ssl" not in config


def test_tls_is_verified_for_the_broker_and_the_clients(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made")
    config = celery_config(
        settings(redis_url="rediss://:s3cret-pass@redis.example:6380/0", redis_tls_ca_file=ca)
    )
    assert config["broker_url"].startswith("rediss://")
    assert config["broker_use_ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert config["broker_use_ssl"]["ssl_ca_certs"] == str(ca)
    assert config["broker_use_ssl"]["ssl_check_hostname"] is True


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_sentinels": "a:26379"}, "KAVE_REDIS_SENTINEL_MASTER"),
        ({"redis_sentinel_master": "kave-primary"}, "KAVE_REDIS_SENTINELS"),
        ({"redis_sentinels": "no-port", "redis_sentinel_master": "m"}, "host:port"),
    ],
)
def test_sentinel_settings_that_cannot_work_are_refused(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        settings(redis_url="redis://localhost/0", **values)


def test_production_refuses_a_weak_sentinel_password() -> None:
    with pytest.raises(ValueError, match="KAVE_REDIS_SENTINEL_PASSWORD"):
        settings(
            env="production",
            process="beat",
            redis_url="redis://:Kx9vQ2mZ7pL4wR8tY3nB@redis:6379/0",
            redis_sentinels="s1:26379",
            redis_sentinel_master="kave-primary",
            redis_sentinel_password="password",
        )
