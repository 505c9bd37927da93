"""Flower, as compose and `kave run` start it: basic auth on, no payloads in task details."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from shared.contract import PROCESS_DELIVERY_TASK
from shared.settings import Settings
from tests.ops.support import events_json, json_lines, unique_inbound
from tests.services import REPO, TEST_WEBHOOK_KEY, child_env, free_port, wait_until
from tests.webhooks import post_events, wait_for_deliveries

pytestmark = pytest.mark.usefixtures("worker", "clean_db")

AUTH = ("ops", "flower-pw-0e7c")


@pytest.fixture
def flower(base_settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log_path = tmp_path / "flower.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.flower",
                "flower",
                "--address=127.0.0.1",
                f"--port={port}",
            ],
            cwd=REPO,
            env=child_env(base_settings, FLOWER_BASIC_AUTH=":".join(AUTH)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(base + "/healthcheck", timeout=1).status_code == 200, 30, "Flower"
        )
        yield base, log_path
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_flower_needs_basic_auth_and_shows_ids_and_sizes_never_payloads(
    flower: tuple[str, Path], receiver: str, engine: Engine
) -> None:
    base, log_path = flower
    assert httpx.get(base + "/api/tasks", timeout=10).status_code == 401
    assert httpx.get(base + "/api/tasks", auth=("ops", "wrong"), timeout=10).status_code == 401
    assert httpx.get(base + "/", timeout=10).status_code == 401

    response = post_events(receiver, events_json([unique_inbound()]))
    assert response.status_code == 200
    delivery_id = response.json()["delivery_id"]
    wait_for_deliveries(engine, [delivery_id])

    def task() -> dict[str, Any] | None:
        tasks = httpx.get(base + "/api/tasks", auth=AUTH, timeout=10).json()
        for info in tasks.values():
            if delivery_id in (info.get("kwargs") or "") and info.get("state") == "SUCCESS":
                return dict(info)
        return None

    wait_until(lambda: task() is not None, 20, "the task in Flower")
    info = task()
    assert info is not None
    assert info["name"] == PROCESS_DELIVERY_TASK
    assert info["args"] == "()"
    assert info["kwargs"] == f"delivery_id={delivery_id} size={len(response.request.content)}"
    everything = httpx.get(base + "/api/tasks", auth=AUTH, timeout=10).text
    for secret in ("raw_msg", "mandrill_events", "Received: from", TEST_WEBHOOK_KEY):
        assert secret not in everything

    # Flower's own lines went through Kave's pipeline (JSON here), without the password.
    lines = json_lines(log_path)
    assert lines
    assert {line["process"] for line in lines} == {"flower"}
    assert AUTH[1] not in log_path.read_text()
