"""The two stacks the stage measures, started as ``kave run`` starts its children.

One embedded PostgreSQL and one embedded Redis (``kave.devstack``, as ``kave run`` starts
them when no URL is configured) serve both stacks; each stack has its own queue, so each
worker only sees its own receiver's batches. A stack is the receiver (one uvicorn, the
command line of ``kave run``), a prefork worker with beat embedded (``-B``) and Flower
(task events on, as ``kave run``'s): Kave's worker (``worker.main``, local store, the
hand-off routes file with one HTTP route to the handler) or the ceiling's
(``bench.tta.ceiling_worker``). The handler is a process of its own.
"""

from __future__ import annotations

import base64
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.stack import REPO
from bench.tta.handler import HANDLER_URL_ENV, PATH, SECRET_ENV
from kave.devstack import (
    EmbeddedPostgres,
    EmbeddedRedis,
    celery_worker_command,
    child_env,
    derive_settings,
    flower_command,
    free_port,
    running,
    uvicorn_server,
    wait_for_http,
)
from kave.devstack.processes import spawn, wait_for_log
from loadkit import payloads
from shared.migrate import upgrade_to_head
from shared.settings import Settings

RECEIVER_APP = "receiver.app:create_app"  # as kave.run
WORKERS = {"kave": "worker.main", "ceiling": "bench.tta.ceiling_worker"}


@dataclass(frozen=True)
class Stack:
    name: str
    receiver: str  # base URL
    settings: Settings
    worker_pid: int


@dataclass(frozen=True)
class Shared:
    database_url: str
    redis_url: str
    handler_url: str
    secret: str
    tmp: Path


@contextmanager
def shared_services(tmp: Path) -> Iterator[Shared]:
    """Embedded PostgreSQL (migrated) and Redis, and the agent's handler process."""
    with ExitStack() as stack:
        postgres = EmbeddedPostgres(tmp / "postgres")
        stack.callback(postgres.stop)
        database_url = postgres.start()
        redis = EmbeddedRedis(tmp / "redis", port=free_port())
        stack.callback(redis.stop)
        redis_url = redis.start()
        upgrade_to_head(database_url)
        secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        port = free_port()
        handler = spawn(
            [sys.executable, "-m", "bench.tta.handler", "--port", str(port)],
            env={**os.environ, SECRET_ENV: secret},
            output=tmp / "handler.log",
            cwd=REPO,
        )
        stack.enter_context(running(handler))
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/healthz", 30, "the agent's handler")
        yield Shared(database_url, redis_url, base + PATH, secret, tmp)


def _routes_file(shared: Shared) -> Path:
    path = shared.tmp / "handoff-routes.yml"
    path.write_text(
        "routes:\n"
        "  - name: agent\n"
        "    handler:\n"
        "      http:\n"
        f"        url: {shared.handler_url}\n"
        f"        secret_env: {SECRET_ENV}\n"
        "        timeout_seconds: 5\n"
    )
    return path


def stack_settings(shared: Shared, name: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=shared.database_url,
        redis_url=shared.redis_url,
        object_store="local",
        local_store_dir=shared.tmp / f"objects-{name}",
        mandrill_webhook_urls=[payloads.BENCH_WEBHOOK_URL],
        mandrill_webhook_keys=[payloads.BENCH_WEBHOOK_KEY],
        queue_name=f"kave-tta-{name}",
        text_queue_name=f"kave-tta-{name}-text",
        handoff_routes_file=_routes_file(shared) if name == "kave" else None,
        log_format="json",
    )


@contextmanager
def _worker(name: str, settings: Settings, env: Mapping[str, str], tmp: Path) -> Iterator[int]:
    log = tmp / f"{name}-worker.log"
    start = log.stat().st_size if log.exists() else 0
    command = celery_worker_command(
        WORKERS[name],
        f"{settings.queue_name},{settings.text_queue_name}",
        concurrency=settings.worker_concurrency,
        node=f"tta-{name}-{uuid.uuid4().hex[:6]}",
        beat_schedule=tmp / f"{name}-celerybeat-schedule",
    )
    process = spawn(command, env=env, output=log, cwd=REPO, new_session=True)
    with running(process):
        wait_for_log(log, b"ready.", 90, f"{name} worker", start=start)
        yield process.pid


@contextmanager
def stack(shared: Shared, name: str) -> Iterator[Stack]:
    """One stack, ``kave`` or ``ceiling``, serving until the block ends."""
    settings = stack_settings(shared, name)
    flower_auth = "kave:" + uuid.uuid4().hex
    env = child_env(
        settings,
        FLOWER_BASIC_AUTH=flower_auth,
        **{SECRET_ENV: shared.secret, HANDLER_URL_ENV: shared.handler_url},
    )
    tmp = shared.tmp
    with ExitStack() as started:
        receiver, _ = started.enter_context(
            uvicorn_server(
                RECEIVER_APP, child_env(settings), tmp / f"{name}-receiver.log", cwd=REPO
            )
        )
        worker_pid = started.enter_context(_worker(name, settings, env, tmp))
        flower_port = free_port()
        # Flower without the routes file, as compose runs it: only workers read it (and
        # its secrets), and Flower's Celery app refuses a file whose secrets it lacks.
        flower = spawn(
            flower_command(flower_port),
            env=child_env(
                derive_settings(settings, handoff_routes_file=None),
                FLOWER_BASIC_AUTH=flower_auth,
            ),
            output=tmp / f"{name}-flower.log",
            cwd=REPO,
        )
        started.enter_context(running(flower))
        wait_for_http(f"http://127.0.0.1:{flower_port}/", 60, "Flower", status=401)
        yield Stack(name, receiver, settings, worker_pid)
