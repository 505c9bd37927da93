"""Flower, as compose and `kave run` start it: basic auth on, no payloads in task details,
the mail listed without beat's housekeeping; and in production it does not start at all
without basic auth, or with a weak password."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from sqlalchemy import Engine

from shared.contract import DISPATCH_SWEEP_TASK, PROCESS_DELIVERY_TASK, PURGE_TASK, RECONCILE_TASK
from shared.queue import celery_config
from shared.settings import Settings
from tests.ops.support import events_json, json_lines, unique_inbound
from tests.services import REPO, TEST_WEBHOOK_KEY, child_env, free_port, wait_until
from tests.webhooks import post_events, wait_for_deliveries

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


@pytest.mark.usefixtures("worker", "clean_db")
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


@pytest.mark.usefixtures("clean_db")
def test_flower_lists_the_mail_not_beats_housekeeping(
    flower: tuple[str, Path], worker: Path, receiver: str, engine: Engine, base_settings: Settings
) -> None:
    base, _ = flower
    producer = Celery("kave-test")
    producer.conf.update(celery_config(base_settings))
    housekeeping = {
        producer.send_task(name).id: name
        for name in (DISPATCH_SWEEP_TASK, RECONCILE_TASK, PURGE_TASK)
    }
    producer.close()

    def finished(task_ids: set[str]) -> set[str]:
        return {
            line["task_id"]
            for line in json_lines(worker)
            if line.get("task_id") in task_ids and "succeeded" in str(line.get("event"))
        }

    # The worker ran them (its log says so), and sent Flower nothing about them.
    wait_until(lambda: finished(set(housekeeping)) == set(housekeeping), 60, "housekeeping")
    response = post_events(receiver, events_json([unique_inbound()]))
    delivery_id = response.json()["delivery_id"]
    wait_for_deliveries(engine, [delivery_id])

    def listed() -> dict[str, Any]:
        return dict(httpx.get(base + "/api/tasks", auth=AUTH, timeout=10).json())

    wait_until(
        lambda: any(delivery_id in (info.get("kwargs") or "") for info in listed().values()),
        20,
        "the delivery in Flower",
    )
    names = {info.get("name") for info in listed().values()}
    assert PROCESS_DELIVERY_TASK in names
    assert not set(housekeeping) & set(listed())
    assert not set(housekeeping.values()) & names


def start_production_flower(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """``celery -A worker.flower flower`` as the flower container runs it (KAVE_ENV and
    KAVE_PROCESS as compose and Kubernetes set them), from a directory without .env.
    Refused, it exits before it needs Redis; let through, it would serve (then the
    timeout fails the test)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KAVE_", "FLOWER_"))
    }
    env |= {
        "PYTHONPATH": str(REPO),
        "KAVE_ENV": "production",
        "KAVE_PROCESS": "flower",
        # Nothing listens on port 1: only the settings matter here.
        "KAVE_REDIS_URL": "redis://:Xq7v2Lm9-redis-Pw8s3Kd1@127.0.0.1:1/0",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.flower", "flower", f"--port={free_port()}"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_flower_refuses_to_start_without_basic_auth(tmp_path: Path) -> None:
    result = start_production_flower(tmp_path)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr
    assert "Traceback" not in result.stderr
    assert "refusing to start in production without basic auth" in result.stderr
    # Whatever KAVE_PROCESS says: one that would not demand basic auth is refused too.
    result = start_production_flower(tmp_path, KAVE_PROCESS="beat")
    assert result.returncode != 0
    assert "KAVE_PROCESS=beat" in result.stderr
    assert "FLOWER_BASIC_AUTH" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("auth", ["admin:admin", "ops:flower-pw", "no-colon-Xq7v2Lm9Pw8s3Kd1"])
def test_production_flower_refuses_a_weak_or_malformed_basic_auth(
    tmp_path: Path, auth: str
) -> None:
    result = start_production_flower(tmp_path, FLOWER_BASIC_AUTH=auth)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr
    assert "Traceback" not in result.stderr
    # The message names the rule, never the password.
    assert (auth.partition(":")[2] or auth) not in result.stderr
