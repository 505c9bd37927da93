"""Worker throughput end to end, next to a no-op task of the same message size.

For each object store (the local directory and an S3 server) and each number of worker
processes (``--concurrency`` 1 and 2), a real ``celery -A worker.main worker`` is started
and warmed up; then N distinct emails of one size are enqueued exactly as the receiver
enqueues them (``receiver.enqueue.DeliveryQueue``: body into Redis, or into the object
store above the claim-check threshold, then the envelope task) and the clock stops when
PostgreSQL shows every delivery processed. emails/s = N / (last commit - first enqueue).

The ceiling is the same worker command line running ``bench.noop_worker`` with the same
number of processes, fed N messages whose argument is a body of the same size. Both
workers are up together, and each row is measured in rounds alternating no-op, Kave,
no-op, Kave (``ROUNDS``), as the receiver stage alternates with its ceiling: the load of
a shared machine drifts by a third within minutes, and a no-op measured once, minutes
before the rows it divides, made the ratios swing with that drift. Rates and CPU sum the
rounds.

Each row also has the CPU time the worker's processes (the Celery main process and its
pool) spent per email, and the no-op's per task: unlike the rates, these hardly move
with other load on the machine. With S3, the S3 server's CPU per email too (moto, on the
same cores).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
from celery import Celery
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine

from bench.noop_task import DONE_KEY, NOOP_QUEUE, NOOP_TASK
from bench.stack import celery_worker, child_env, s3_server_process, tree_cpu, wait_until
from loadkit import payloads
from receiver.enqueue import DeliveryQueue
from shared.accepted import AcceptedLedger
from shared.db import normalise_database_url
from shared.models import Delivery, DeliveryStatus, Email
from shared.objectstore import make_object_store
from shared.queue import celery_config
from shared.settings import Settings

# Emails per measurement, by size: enough for several seconds of work each.
COUNTS = {"8KB": 240, "100KB": 200, "1MB": 60, "3MB": 30}
QUICK_COUNTS = {"8KB": 80, "100KB": 60, "1MB": 20, "3MB": 10}
# Pairs of no-op and Kave measurements per row (--quick: one).
ROUNDS = 2
DONE = (DeliveryStatus.PROCESSED, DeliveryStatus.FAILED)


@dataclass
class WorkerRow:
    size: str
    store: str
    processes: int
    # Sums over the row's rounds, from zero.
    emails: int = 0
    seconds: float = 0.0
    noop_seconds: float = 0.0
    failed: int = 0
    cpu_seconds: float = 0.0  # the worker's processes, for the N emails
    noop_cpu_seconds: float = 0.0  # the no-op worker's processes, for its N tasks
    s3_cpu_seconds: float | None = None  # the S3 server, for the N emails

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds / self.emails * 1000

    @property
    def noop_cpu_ms(self) -> float:
        return self.noop_cpu_seconds / self.emails * 1000

    @property
    def s3_cpu_ms(self) -> float | None:
        return None if self.s3_cpu_seconds is None else self.s3_cpu_seconds / self.emails * 1000

    @property
    def rate(self) -> float:
        return self.emails / self.seconds

    @property
    def noop_rate(self) -> float:
        return self.emails / self.noop_seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.noop_rate

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rate": round(self.rate, 2),
            "noop_rate": round(self.noop_rate, 2),
            "cpu_ms": round(self.cpu_ms, 2),
            "noop_cpu_ms": round(self.noop_cpu_ms, 2),
            "s3_cpu_ms": None if self.s3_cpu_ms is None else round(self.s3_cpu_ms, 2),
            "ratio": round(self.ratio, 4),
        }


def engine_for(settings: Settings) -> Engine:
    return create_engine(normalise_database_url(settings.require_database_url()))


def enqueue_all(settings: Settings, bodies: list[bytes]) -> tuple[float, list[str]]:
    """Enqueue every body as the receiver does; the monotonic start time and the ids."""

    async def run() -> tuple[float, list[str]]:
        client = AsyncRedis.from_url(settings.require_redis_url())
        producer = Celery("kave-bench-producer", set_as_current=False)
        producer.conf.update(celery_config(settings))
        queue = DeliveryQueue(
            redis=client,
            celery=producer,
            object_store=make_object_store(settings),
            claim_check_threshold=settings.claim_check_threshold_bytes,
            timeout_seconds=30,
            ledger=AcceptedLedger(settings.queue_name),
        )
        started = time.monotonic()
        try:
            envelopes = [await queue.enqueue(body, "bench") for body in bodies]
        finally:
            close = getattr(queue, "close", None)  # stops its publisher thread
            if close is not None:
                close()
            await client.aclose()
            producer.close()
        return started, [e.delivery_id for e in envelopes]

    return asyncio.run(run())


def wait_processed(engine: Engine, ids: list[str], timeout: float) -> tuple[float, int]:
    """Poll until every delivery is done; the monotonic time it was seen, and failures."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Delivery.status, func.count())
                .where(Delivery.id.in_(ids), Delivery.status.in_(DONE))
                .group_by(Delivery.status)
            ).all()
        done = sum(count for _, count in rows)
        if done == len(ids):
            failed = sum(count for status, count in rows if status == DeliveryStatus.FAILED)
            return time.monotonic(), failed
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done}/{len(ids)} deliveries processed after {timeout} s")
        time.sleep(0.02)


def email_bodies(size: str, count: int, seed: int) -> list[bytes]:
    return [payloads.sign(payloads.email_events(size, seed=seed + i)).body for i in range(count)]


def measure_kave(settings: Settings, engine: Engine, bodies: list[bytes]) -> tuple[float, int]:
    started, ids = enqueue_all(settings, bodies)
    finished, failed = wait_processed(engine, ids, timeout=300)
    return finished - started, failed


class CpuMeter:
    """CPU seconds that processes (each with its children) spend during a block."""

    def __init__(self, *processes: psutil.Process | None) -> None:
        self.processes = processes
        self.used: list[float | None] = [None] * len(processes)

    def __enter__(self) -> CpuMeter:
        self._start = [tree_cpu(p) if p is not None else None for p in self.processes]
        return self

    def __exit__(self, *_: object) -> None:
        self.used = [
            tree_cpu(p) - start if p is not None and start is not None else None
            for p, start in zip(self.processes, self._start, strict=True)
        ]


def measure_noop(settings: Settings, bodies: list[bytes]) -> float:
    client = redis.Redis.from_url(settings.require_redis_url())
    client.delete(DONE_KEY)
    producer = Celery("kave-bench-noop-producer", set_as_current=False)
    producer.conf.update(celery_config(settings))
    messages = [body.decode("ascii") for body in bodies]
    started = time.monotonic()
    for message in messages:
        producer.send_task(NOOP_TASK, args=[message], queue=NOOP_QUEUE, retry=False)
    wait_until(lambda: int(client.get(DONE_KEY) or 0) >= len(messages), 300, "no-op tasks", 0.02)
    elapsed = time.monotonic() - started
    producer.close()
    client.close()
    return elapsed


def run(
    base: Settings,
    s3: Settings | None,
    tmp: Path,
    *,
    sizes: list[str],
    processes: list[int],
    quick: bool,
    progress: Callable[[str], None] = print,
) -> list[WorkerRow]:
    counts = QUICK_COUNTS if quick else COUNTS
    rounds = 1 if quick else ROUNDS
    engine = engine_for(base)
    # The no-op's messages: a body of each size (the same ones every round).
    noop_bodies = {
        size: email_bodies(size, counts[size], seed=1000 * (i + 1)) for i, size in enumerate(sizes)
    }
    rows: list[WorkerRow] = []
    stores = [("local", base)] + ([("s3", s3)] if s3 is not None else [])
    seed = 10_000_000
    for store, settings in stores:
        for n in processes:
            s3_server = (
                s3_server_process(settings.s3_endpoint_url)
                if store == "s3" and settings.s3_endpoint_url
                else None
            )
            with (
                celery_worker(
                    "bench.noop_worker", NOOP_QUEUE, child_env(base), tmp / "noop-worker.log", n
                ) as noop_worker,
                celery_worker(
                    "worker.main", settings.queue_name, child_env(settings), tmp / "worker.log", n
                ) as worker,
            ):
                # Warm up every process (database pool, object store client).
                measure_noop(base, [b"x" * 1000] * 4 * n)
                measure_kave(
                    settings,
                    engine,
                    [
                        payloads.sign(payloads.email_events("8KB", seed=seed + i)).body
                        for i in range(2 * n)
                    ],
                )
                seed += 100
                for size in sizes:
                    row = WorkerRow(size, store, n)
                    for _ in range(rounds):
                        with CpuMeter(psutil.Process(noop_worker.pid)) as noop_meter:
                            row.noop_seconds += measure_noop(base, noop_bodies[size])
                        row.noop_cpu_seconds += noop_meter.used[0] or 0.0
                        # Fresh, distinct emails for every run: nothing is a duplicate.
                        run_bodies = email_bodies(size, counts[size], seed=seed)
                        seed += 10_000
                        with CpuMeter(psutil.Process(worker.pid), s3_server) as meter:
                            seconds, failed = measure_kave(settings, engine, run_bodies)
                        row.emails += len(run_bodies)
                        row.seconds += seconds
                        row.failed += failed
                        row.cpu_seconds += meter.used[0] or 0.0
                        if meter.used[1] is not None:
                            row.s3_cpu_seconds = (row.s3_cpu_seconds or 0.0) + meter.used[1]
                    rows.append(row)
                    progress(
                        f"  worker {size} {store} x{n}: {row.rate:,.1f} emails/s "
                        f"(no-op {row.noop_rate:,.1f}/s, {row.ratio:.0%}); CPU "
                        f"{row.cpu_ms:.1f} ms/email (no-op {row.noop_cpu_ms:.1f})"
                    )
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Email)).scalar_one()
        conn.execute(text("SELECT 1"))
    progress(f"  ({stored} emails stored in the scratch database)")
    engine.dispose()
    return rows
