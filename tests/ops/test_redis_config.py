"""The Redis that `kave run`, the tests and the benchmarks start is configured as the
production compose file configures it, down to how often its AOF is compacted."""

from __future__ import annotations

from pathlib import Path

import redis

from kave.devstack import EmbeddedRedis
from kave.devstack.embedded import AOF_REWRITE_MIN_SIZE
from tests.ops.support import ROOT, policy_module
from tests.services import free_port

compose_values = policy_module("values")

GIB = 1024**3


def compose_redis_argv() -> list[str]:
    doc = compose_values.load_yaml(ROOT / "docker-compose.yml")
    argv: list[str] = compose_values.as_argv(doc["services"]["redis"]["command"])
    return argv


def test_compose_and_the_embedded_redis_compact_the_aof_at_the_same_size() -> None:
    assert compose_values.option_value(compose_redis_argv(), "--auto-aof-rewrite-min-size") == (
        AOF_REWRITE_MIN_SIZE
    )


def test_the_embedded_redis_runs_with_that_setting_and_aof_on(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    client = redis.Redis.from_url(server.start())
    try:
        config = client.config_get("*")
    finally:
        client.close()
        server.stop()
    assert int(config["auto-aof-rewrite-min-size"]) == GIB
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
