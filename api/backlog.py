"""The pipeline's backlog, served on the management API's ``/metrics``.

Queue depth, tasks taken but unacknowledged, the oldest accepted delivery without a
result, unfinished deliveries and open dead letters are read from Redis and PostgreSQL
when Prometheus scrapes, so every API replica reports the same backlog (aggregate with
``max``, not ``sum``). They live here, not on the receiver: the public endpoint runs no
database queries for monitoring, and scraping one API process is enough.

A source that cannot be read within ``KAVE_METRICS_QUERY_TIMEOUT_SECONDS`` sets its
gauges to NaN and ``kave_api_metrics_source_up{source=...}`` to 0; the scrape still
answers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio import Redis
from sqlalchemy import Engine, text

from shared.web.probes import BlockingProbe

log = structlog.get_logger(__name__)

# Where kombu's Redis transport keeps the messages workers hold but have not acknowledged.
UNACKED_HASH = "unacked"


class BacklogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.queue_depth = Gauge(
            "kave_queue_depth",
            "Tasks waiting in the Celery queue (Redis LLEN), read at scrape time",
            ["queue"],
            registry=r,
        )
        self.queue_unacked = Gauge(
            "kave_queue_unacked",
            "Tasks taken by workers and not yet acknowledged (running, or waiting to retry)",
            registry=r,
        )
        self.deliveries_unfinished = Gauge(
            "kave_deliveries_unfinished",
            "Deliveries a worker started but has not finished (deliveries.status = received)",
            registry=r,
        )
        self.oldest_unfinished_age = Gauge(
            "kave_oldest_unfinished_delivery_age_seconds",
            "Age of the oldest accepted delivery without a result: the oldest queued task "
            "or the oldest started but unfinished delivery; 0 when there is none",
            registry=r,
        )
        self.dead_letters_open = Gauge(
            "kave_dead_letters_open",
            "Dead letters waiting for a replay or a discard (dead_letters.status = open)",
            registry=r,
        )
        self.scrape_source_up = Gauge(
            "kave_api_metrics_source_up",
            "1 if the last scrape could read this source (redis, postgresql), else 0 "
            "(its gauges are then NaN)",
            ["source"],
            registry=r,
        )
        self._db_probe = BlockingProbe("metrics-postgresql")

    async def refresh(
        self, *, redis: Redis, engine: Engine, queue_name: str, timeout: float
    ) -> None:
        """Read queue depth, unfinished deliveries and open dead letters now."""
        queued, database = await asyncio.gather(
            self._read_queue(redis, queue_name, timeout),
            self._read_database(engine, timeout),
        )
        self.scrape_source_up.labels("redis").set(1 if queued else 0)
        self.scrape_source_up.labels("postgresql").set(1 if database else 0)
        nan = math.nan
        self.queue_depth.labels(queue_name).set(queued.depth if queued else nan)
        self.queue_unacked.set(queued.unacked if queued else nan)
        self.deliveries_unfinished.set(database.unfinished if database else nan)
        self.dead_letters_open.set(database.dead_letters_open if database else nan)
        if queued is None and database is None:
            self.oldest_unfinished_age.set(nan)
            return
        now = datetime.now(UTC)
        oldest = [
            when
            for when in (
                queued.oldest_received_at if queued else None,
                database.oldest_received_at if database else None,
            )
            if when is not None
        ]
        self.oldest_unfinished_age.set(
            max(0.0, (now - min(oldest)).total_seconds()) if oldest else 0.0
        )

    async def _read_queue(
        self, redis: Redis, queue_name: str, timeout: float
    ) -> _QueueState | None:
        async def read() -> _QueueState:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.llen(queue_name)
                pipe.hlen(UNACKED_HASH)
                # kombu LPUSHes and workers BRPOP: the oldest message is the last one.
                pipe.lindex(queue_name, -1)
                depth, unacked, oldest = await pipe.execute()
            return _QueueState(int(depth), int(unacked), _message_received_at(oldest))

        try:
            return await asyncio.wait_for(read(), timeout)
        except Exception as exc:
            log.warning("metrics.source_failed", source="redis", error_type=type(exc).__name__)
            return None

    async def _read_database(self, engine: Engine, timeout: float) -> _DatabaseState | None:
        timeout_ms = max(int(timeout * 1000), 1)

        def read() -> _DatabaseState:
            with engine.connect() as connection:
                # A slow query must not outlive the scrape.
                connection.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
                unfinished, oldest = connection.execute(
                    text("SELECT count(*), min(received_at) FROM deliveries WHERE status = :s"),
                    {"s": "received"},
                ).one()
                dead_letters = connection.execute(
                    text("SELECT count(*) FROM dead_letters WHERE status = :s"), {"s": "open"}
                ).scalar_one()
                connection.rollback()
            return _DatabaseState(int(unfinished), oldest, int(dead_letters))

        try:
            return await self._db_probe.run(read, timeout)
        except Exception as exc:
            log.warning("metrics.source_failed", source="postgresql", error_type=type(exc).__name__)
            return None


@dataclass(frozen=True)
class _QueueState:
    depth: int
    unacked: int
    oldest_received_at: datetime | None


@dataclass(frozen=True)
class _DatabaseState:
    unfinished: int
    oldest_received_at: datetime | None
    dead_letters_open: int


def _message_received_at(raw: bytes | None) -> datetime | None:
    """When the receiver accepted the delivery of a queued Celery message, if it says."""
    if not raw:
        return None
    try:
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        envelope = body[1]["envelope"]
        received = datetime.fromisoformat(envelope["received_at"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return received if received.tzinfo else received.replace(tzinfo=UTC)
