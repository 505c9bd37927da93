"""The API, Celery beat and Flower as real processes on a Redis that is not one plain
server: a Sentinel topology (tests/ops/test_sentinel_processes.py) or a TLS-only
redis-server (tests/ops/test_tls_processes.py), all from ``loadkit.redis_topology``.

Each check goes through a path that needs Redis and says so by its answer: the API's
rate limits count in Redis (401 until the limit, then 429; 503 when Redis is
unreachable), a dead-letter replay is a Celery message the API publishes (202 once
queued), the backlog gauge is read from Redis at scrape time; beat publishes a scheduled
task that a worker on the same broker runs; Flower asks the worker over the broker which
queues it consumes and reads their lengths from Redis.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.auth import hash_password
from kave.devstack.commands import PYTHON, celery_worker_command, flower_command
from kave.devstack.processes import kill_group, running, spawn
from shared.contract import RECONCILE_TASK
from shared.models import DeadLetter, Delivery, User
from shared.queue import make_producer
from shared.settings import Settings
from tests.ops.support import json_lines, sample, scrape
from tests.services import REPO, child_env, derive_settings, free_port, wait_until

TOKEN = "/api/v1/auth/token"
PASSWORD = "correct horse battery staple"
FLOWER_AUTH = ("ops", "flower-pw-5c1a")
# The token endpoint's limit per client; the API believes X-Forwarded-For from loopback
# (its own test client), so that every check counts in a bucket of its own.
TOKEN_LIMIT = 3
_CLIENTS = itertools.count(1)


def api_settings(settings: Settings) -> Settings:
    """``settings`` for an API process: a small token limit, the client named by
    X-Forwarded-For, a queue nobody consumes (so that a replay stays there to be seen)."""
    return derive_settings(
        settings,
        rate_limit_token=f"{TOKEN_LIMIT}/minute",
        trusted_proxies="127.0.0.0/8",
        queue_name=f"kave-api-ha-{uuid.uuid4().hex[:8]}",
    )


# --- the API ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiUnderTest:
    base: str
    settings: Settings
    engine: Engine
    token: str

    def token_statuses(self) -> list[int]:
        """The answers to TOKEN_LIMIT + 1 wrong passwords from a client of its own, for
        a user of its own (whose cheap hash keeps the checks quick)."""
        client = {"X-Forwarded-For": f"203.0.113.{next(_CLIENTS)}"}
        name, _ = make_operator(self.engine)
        wrong = {"username": name, "password": "not the password"}
        return [
            httpx.post(self.base + TOKEN, data=wrong, headers=client, timeout=10).status_code
            for _ in range(TOKEN_LIMIT + 1)
        ]

    def replay(self) -> httpx.Response:
        """POST a replay of a new open dead letter: the API publishes a Celery message."""
        dead_letter_id = open_dead_letter(self.engine)
        return httpx.post(
            f"{self.base}/api/v1/dead-letters/{dead_letter_id}/replay",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def readyz(self) -> httpx.Response:
        return httpx.get(self.base + "/readyz", timeout=10)

    def metrics(self) -> str:
        return scrape(self.base + "/metrics")


def make_operator(engine: Engine) -> tuple[str, str]:
    """A user who may replay dead letters: (name, password)."""
    name = f"ops-{uuid.uuid4().hex[:8]}"
    with Session(engine) as session:
        # 4 rounds: verified as with 12, only faster.
        session.add(User(name=name, password_hash=hash_password(PASSWORD, rounds=4)))
        session.commit()
    return name, PASSWORD


def get_token(base: str, name: str, password: str) -> str:
    response = httpx.post(base + TOKEN, data={"username": name, "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def open_dead_letter(engine: Engine) -> int:
    """An open dead letter of a delivery of its own, as the worker leaves one."""
    now = datetime.now(UTC)
    delivery = Delivery(
        id=str(uuid.uuid4()),
        received_at=now,
        request_id=uuid.uuid4().hex,
        body_sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        body_size=1234,
        archive_key="deliveries/ab/abc",
        status="processed",
        event_count=0,
        attempts=1,
    )
    with Session(engine) as session:
        session.add(delivery)
        session.flush()
        dead_letter = DeadLetter(
            delivery_id=delivery.id,
            event_index=0,
            status="open",
            first_seen_at=now,
            last_seen_at=now,
            kind="inbound",
            error_class="MessageParseError",
            message="raw_msg is missing",
            traceback="Traceback (most recent call last): ...",
            attempts=1,
        )
        session.add(dead_letter)
        session.commit()
        return dead_letter.id


def assert_api_uses_redis(api: ApiUnderTest, primary: redis.Redis) -> None:
    """Readiness, the rate limits, a replay and the backlog gauge: each through Redis.
    ``primary``: a plain client of the node that must hold what the API wrote."""
    ready = api.readyz()
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "failing": []}
    # 401 says the limiter answered (503 if it could not reach Redis); 429 that it counted.
    assert api.token_statuses() == [401] * TOKEN_LIMIT + [429]
    queue = api.settings.queue_name
    before = primary.llen(queue)
    replayed = api.replay()
    assert replayed.status_code == 202, replayed.text
    assert primary.llen(queue) == before + 1
    metrics = api.metrics()
    assert sample(metrics, "kave_api_metrics_source_up", source="redis") == 1
    assert sample(metrics, "kave_queue_depth", queue=queue) == before + 1


# --- beat, a worker and Flower ----------------------------------------------------------


def beat_settings(settings: Settings) -> Settings:
    """Beat with reconciliation due every second (the other entries keep their minutes)."""
    return derive_settings(settings, reconcile_interval_seconds=1, process="beat")


def spawn_beat(settings: Settings, directory: Path) -> Popen[bytes]:
    """``celery -A worker.main beat`` as compose runs it, logging to ``directory``."""
    command = [
        PYTHON, "-m", "celery", "-A", "worker.main", "beat", "--loglevel", "INFO",
        "--schedule", str(directory / "celerybeat-schedule"),
    ]  # fmt: skip
    env = child_env(beat_settings(settings))
    return spawn(command, env=env, output=directory / "beat.log", cwd=REPO)


def spawn_worker(settings: Settings, log_path: Path, node: str) -> Popen[bytes]:
    """A worker as tests.services starts one, without waiting for it: it imports while
    the others do."""
    queues = f"{settings.queue_name},{settings.text_queue_name}"
    command = celery_worker_command("worker.main", queues, concurrency=1, node=node)
    env = child_env(derive_settings(settings, process="worker"))
    return spawn(command, env=env, output=log_path, cwd=REPO, new_session=True)


def spawn_flower(settings: Settings, log_path: Path) -> tuple[Popen[bytes], str]:
    """``celery -A worker.flower flower`` as ``kave run`` starts it; and its base URL."""
    port = free_port()
    env = child_env(
        derive_settings(settings, process="flower"), FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH)
    )
    return spawn(
        flower_command(port), env=env, output=log_path, cwd=REPO
    ), f"http://127.0.0.1:{port}"


def scheduled_runs(worker_log: Path) -> int:
    """How many reconciliations the worker finished (beat is the only one to send them)."""
    if not worker_log.exists():
        return 0
    return sum(
        1
        for line in json_lines(worker_log)
        if line.get("task_name") == RECONCILE_TASK and "succeeded" in str(line.get("event"))
    )


def flower_get(base: str, path: str) -> Any:
    response = httpx.get(base + path, auth=FLOWER_AUTH, timeout=15)
    assert response.status_code == 200, response.text
    return response.json()


def flower_worker(base: str, node: str) -> dict[str, Any] | None:
    """What Flower learnt of the worker ``node`` by asking it over the broker."""
    workers = flower_get(base, "/api/workers?refresh=1")
    for name, info in workers.items():
        if name.startswith(f"{node}@") and info.get("active_queues"):
            return dict(info)
    return None


def publish(settings: Settings, count: int) -> None:
    """``count`` messages on the settings' queue, as beat or the receiver would send."""
    producer = make_producer(settings, "kave-test-ha")
    try:
        for _ in range(count):
            producer.send_task(RECONCILE_TASK)
    finally:
        producer.close()


def assert_beat_worker_and_flower(
    settings: Settings, primary: redis.Redis, directory: Path
) -> None:
    """Beat's schedule runs on a worker, and Flower lists that worker and reads its
    queue's length, all three processes on ``settings``' Redis. ``primary``: a plain
    client of the node that holds the queue."""
    node = f"ha-{uuid.uuid4().hex[:8]}"
    worker_log = directory / "worker.log"
    with ExitStack() as processes:
        # All three at once: each takes seconds to import Celery and Kave.
        worker = processes.enter_context(running(spawn_worker(settings, worker_log, node)))
        processes.callback(kill_group, worker.pid)  # its pool too, whatever happens
        flower_process, flower = spawn_flower(settings, directory / "flower.log")
        processes.enter_context(running(flower_process))
        with running(spawn_beat(settings, directory)):
            wait_until(
                lambda: scheduled_runs(worker_log) >= 1,
                60,
                f"a scheduled reconciliation run (logs in {directory})",
            )
        # Flower asks the workers over the broker (Celery's remote control) what they
        # consume, and keeps the answer after a worker has gone.
        wait_until(lambda: flower_worker(flower, node) is not None, 60, "the worker in Flower")
        info = flower_worker(flower, node)
        assert info is not None
        assert settings.queue_name in {queue["name"] for queue in info["active_queues"]}
        kill_group(worker.pid)
        worker.wait(timeout=30)
        # Nobody consumes the queue now (beat has stopped too): what Flower reads must be
        # what is there.
        publish(settings, 3)
        expected = primary.llen(settings.queue_name)
        assert expected >= 3
        lengths = flower_get(flower, "/api/queues/length")["active_queues"]
        assert {"name": settings.queue_name, "messages": expected} in lengths, lengths
