"""The command line of every Kave process, built in one place.

``kave run``, the tests and the benchmarks start the receiver, the API, workers,
Flower and the S3 server with these, so all three run what production runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

PYTHON = sys.executable
HOST = "127.0.0.1"


def uvicorn_command(
    app_factory: str, port: int, *, workers: int | None = None, options: Sequence[str] = ()
) -> list[str]:
    """uvicorn serving ``app_factory`` (``module:function`` returning the app) on 127.0.0.1.

    ``--no-proxy-headers``: uvicorn would otherwise replace the client address with
    ``X-Forwarded-For`` for peers in its own allow-list (loopback by default) before the
    app sees it, so a client on the same host could rotate that header past every
    per-client limit. Who the client is gets decided in one place,
    :mod:`shared.client_address`, which believes the header only from
    ``KAVE_TRUSTED_PROXIES``.
    """
    command = [
        PYTHON, "-m", "uvicorn", app_factory, "--factory",
        "--host", HOST, "--port", str(port), "--no-access-log", "--no-proxy-headers",
    ]  # fmt: skip
    if workers is not None:
        command += ["--workers", str(workers)]
    return [*command, *options]


def celery_worker_command(
    app: str,
    queue: str,
    *,
    concurrency: int,
    node: str | None = None,
    beat_schedule: Path | None = None,
) -> list[str]:
    """A prefork ``celery worker`` on one queue; with ``beat_schedule``, beat embedded (-B).

    Gossip and mingle are off: every node is independent, and they only slow the start.
    -q drops Celery's plain-text banner; "ready." is still logged once it consumes.
    """
    command = [
        PYTHON, "-m", "celery", "-A", app, "-q", "worker",
        "--loglevel", "INFO", "--pool", "prefork", "--concurrency", str(concurrency),
        "-Q", queue, "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if node:
        command += ["-n", f"{node}@%h"]
    if beat_schedule is not None:
        # Embedded beat is fine for a single worker (`kave run`); compose runs its own.
        command += ["-B", "--schedule", str(beat_schedule)]
    return command


def flower_command(port: int) -> list[str]:
    """Flower on 127.0.0.1 (basic auth comes from FLOWER_BASIC_AUTH in its environment)."""
    command = [PYTHON, "-m", "celery", "-A", "worker.flower", "flower"]
    return [*command, f"--address={HOST}", f"--port={port}"]


def moto_command(port: int) -> list[str]:
    """moto in server mode: a real S3 HTTP endpoint, objects kept in memory."""
    return [PYTHON, "-m", "moto.server", "-H", HOST, "-p", str(port)]
