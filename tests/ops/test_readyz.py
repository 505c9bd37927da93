"""/healthz and /readyz against real dependencies that go away and come back, and the
API's backlog metrics while one is away."""

from __future__ import annotations

from pathlib import Path

import httpx

from kave.devstack import EmbeddedRedis
from shared.settings import Settings
from tests.ops.support import json_lines, sample, scrape
from tests.services import api_process, derive_settings, free_port, receiver_process, wait_until


def test_readyz_names_redis_when_it_is_down_and_recovers(
    base_settings: Settings, tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", port=free_port())
    url = redis.start()
    settings = derive_settings(base_settings, redis_url=url)
    log_path = tmp_path / "receiver.log"
    try:
        with (
            receiver_process(settings, log_path) as base,
            api_process(settings, tmp_path / "api.log") as api,
        ):
            ready = httpx.get(base + "/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ok", "failing": []}

            redis.stop()
            down = httpx.get(base + "/readyz", timeout=10)
            assert down.status_code == 503
            assert down.json()["failing"] == ["redis"]
            assert down.json()["message"] == "not ready: redis unreachable"
            # Liveness is not readiness: the process itself is fine.
            assert httpx.get(base + "/healthz", timeout=10).status_code == 200
            # Metrics still answer, quickly, and say which source they could not read.
            scrape(base + "/metrics")
            metrics = scrape(api + "/metrics")
            assert sample(metrics, "kave_api_metrics_source_up", source="redis") == 0
            assert sample(metrics, "kave_api_metrics_source_up", source="postgresql") == 1

            redis.start()  # same port, same data directory
            wait_until(
                lambda: httpx.get(base + "/readyz", timeout=10).status_code == 200,
                15,
                "readiness after Redis came back",
            )
    finally:
        redis.stop()
    warnings = [line for line in json_lines(log_path) if line["event"] == "readyz.failing"]
    assert warnings
    assert warnings[0]["failing"] == ["redis"]
    assert warnings[0]["level"] == "warning"
    assert "request_id" in warnings[0]


def test_readyz_names_postgresql_when_it_is_unreachable(
    base_settings: Settings, tmp_path: Path
) -> None:
    nowhere = f"postgresql+psycopg://kave:secret-pw@127.0.0.1:{free_port()}/kave"
    settings = derive_settings(base_settings, database_url=nowhere)
    log_path = tmp_path / "api.log"
    with (
        api_process(settings, log_path) as api,
        receiver_process(settings, tmp_path / "receiver.log") as receiver,
    ):
        response = httpx.get(api + "/readyz", timeout=10)
        assert response.status_code == 503
        assert response.json()["failing"] == ["postgresql"]
        assert "secret-pw" not in response.text
        # The receiver's 200 needs Redis, not the database: it stays in service, and a
        # batch accepted now is stored once PostgreSQL is back.
        ready = httpx.get(receiver + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    assert "secret-pw" not in log_path.read_text()
