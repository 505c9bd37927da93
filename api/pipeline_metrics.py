"""The pipeline gauges served on the management API's ``/metrics``: the backlog and what
the alert rules need, all read from Redis and PostgreSQL when Prometheus scrapes.

A prometheus_client custom collector: nothing is recorded on the request path, so every
API replica reports the same values (aggregate with ``max``/``min``, never ``sum``). The
public receiver runs no monitoring queries; scraping one API process is enough.
Registering it is one line wherever a process serves ``/metrics``::

    PipelineCollector(engine, redis, settings.queue_name).register(registry)

``redis`` is a synchronous ``redis.Redis`` whose socket timeouts bound the Redis read
(:func:`scrape_redis` builds one);
PostgreSQL is bounded by ``statement_timeout`` (``timeout``) and the engine's connect and
pool timeouts. :meth:`collect` blocks: serve the registry from a thread
(``prometheus_client.start_http_server``, or ``generate_latest`` via
``anyio.to_thread.run_sync``), never directly on an event loop.

Series (deploy/prometheus/kave-rules.yml alerts on them):

- ``kave_queue_depth{queue}``, ``kave_queue_unacked``: tasks waiting in the Celery queue,
  and taken by workers but not acknowledged (running, or waiting to retry).
- ``kave_deliveries_unfinished``, ``kave_dead_letters_open``: deliveries a worker started
  and did not finish; dead letters waiting for a replay or a discard.
- ``kave_oldest_unfinished_delivery_age_seconds``: the oldest accepted delivery without a
  result, queued or started; 0 when there is none.
- ``kave_queue_oldest_task_age_seconds{queue}``: seconds since the receiver accepted the
  delivery of the oldest task still waiting in the Celery queue; 0 when it is empty.
- ``kave_inbound_last_email_age_seconds{domain}``: seconds since the last inbound email
  was stored, for ``domain="all"`` and for the ``top_domains`` recipient domains with the
  most mail over ``domain_lookback_seconds`` (a bounded label set, and a domain that goes
  silent keeps its series for the whole lookback), read from the per-day counts in
  ``domain_activity`` (flat as mail grows; the lookback is rounded out to whole UTC
  days). ``+Inf`` for "all" when no email was ever stored: a deployment whose mail never
  arrives is as broken as one where it stopped.
- ``kave_inbound_silence_threshold_seconds``: how long inbound mail may be silent before
  the ``KaveNoInboundMail`` alert fires (configurable here, not in the rules file).
- ``kave_audit_inconsistencies{kind}``, ``kave_audit_last_run_timestamp_seconds``: what
  the newest ``kave audit`` run left (after ``--repair``) and when it finished (alert on
  both, or a stopped audit looks clean forever); no series before the first run.
- ``kave_api_metrics_source_up{source}``: 1 if the last scrape could read that source
  (redis, postgresql), else 0: the backlog gauges of that source are then NaN and its
  alerting series (queue age, inbound silence) are left out.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, select, text

from shared.models import AuditRun
from shared.redis_connect import redis_client
from shared.settings import Settings

log = structlog.get_logger(__name__)

ALL_DOMAINS = "all"
DEFAULT_SILENCE_THRESHOLD_SECONDS = 6 * 3600.0
# The oldest message may be a task without an envelope (reconcile, replay): look a few
# messages further for one that says when its delivery was accepted.
QUEUE_TAIL_SCAN = 10
# Where kombu's Redis transport keeps the messages workers hold but have not acknowledged.
UNACKED_HASH = "unacked"

_UNFINISHED = text("SELECT count(*), min(received_at) FROM deliveries WHERE status = 'received'")
_DEAD_LETTERS_OPEN = text("SELECT count(*) FROM dead_letters WHERE status = 'open'")
# From the per-day counts the worker keeps (worker.ingest.storage.activity): a row per
# domain and day, however much mail; the lookback starts at the start of its first UTC day.
_DOMAIN_AGES = text(
    """
    SELECT domain, extract(epoch FROM now() - max(last_received_at)) AS age
    FROM domain_activity
    WHERE day >= ((now() - make_interval(secs => :lookback)) AT TIME ZONE 'UTC')::date
    GROUP BY 1
    ORDER BY sum(emails) DESC, 1
    LIMIT :top
    """
)
_ALL_AGE = text("SELECT extract(epoch FROM now() - max(received_at)) FROM emails")


@dataclass(frozen=True)
class _Queue:
    depth: int
    unacked: int
    oldest_accepted_at: datetime | None  # None: empty, or no task says


@dataclass(frozen=True)
class _Database:
    unfinished: int
    oldest_unfinished_at: datetime | None
    dead_letters_open: int
    all_age: float  # +Inf when no email was ever stored
    by_domain: list[tuple[str, float]]
    last_audit: Any  # the newest audit_runs row (finished_at, counts), or None


@dataclass(frozen=True)
class _Families:
    queue_depth: GaugeMetricFamily
    queue_unacked: GaugeMetricFamily
    deliveries_unfinished: GaugeMetricFamily
    oldest_unfinished_age: GaugeMetricFamily
    dead_letters_open: GaugeMetricFamily
    queue_age: GaugeMetricFamily
    inbound: GaugeMetricFamily
    threshold: GaugeMetricFamily
    source_up: GaugeMetricFamily
    audit_inconsistencies: GaugeMetricFamily
    audit_last_run: GaugeMetricFamily

    def all(self) -> list[GaugeMetricFamily]:
        return list(vars(self).values())


def scrape_redis(settings: Settings, timeout: float) -> Redis:
    """The Redis client a collector reads with: each read bounded by ``timeout`` and never
    retried (redis-py retries a failed command 3 times with backoff by default, which
    made a scrape with Redis down take 4.4 s; the next scrape is the retry)."""
    return redis_client(
        settings,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class PipelineCollector(Collector):
    """Reads the backlog, the queue's oldest task and the inbound silence at every scrape."""

    def __init__(
        self,
        engine: Engine,
        redis: Redis,
        queue_name: str,
        *,
        silence_threshold_seconds: float = DEFAULT_SILENCE_THRESHOLD_SECONDS,
        top_domains: int = 10,
        domain_lookback_seconds: float = 30 * 86400.0,
        timeout: float = 2.0,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.queue_name = queue_name
        self.silence_threshold_seconds = silence_threshold_seconds
        self.top_domains = top_domains
        self.domain_lookback_seconds = domain_lookback_seconds
        self.timeout = timeout

    def register(self, registry: CollectorRegistry) -> PipelineCollector:
        registry.register(self)
        return self

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Lets the registry check names without running the queries at registration.
        return self._families().all()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        f = self._families()
        queue, database = self._read_queue(), self._read_database()
        nan = math.nan
        f.source_up.add_metric(["redis"], 0.0 if queue is None else 1.0)
        f.source_up.add_metric(["postgresql"], 0.0 if database is None else 1.0)
        f.queue_depth.add_metric([self.queue_name], queue.depth if queue else nan)
        f.queue_unacked.add_metric([], queue.unacked if queue else nan)
        f.deliveries_unfinished.add_metric([], database.unfinished if database else nan)
        f.dead_letters_open.add_metric([], database.dead_letters_open if database else nan)
        f.oldest_unfinished_age.add_metric([], _oldest_unfinished_age(queue, database))
        if queue is not None:
            f.queue_age.add_metric([self.queue_name], _age(queue.oldest_accepted_at))
        if database is not None:
            f.inbound.add_metric([ALL_DOMAINS], database.all_age)
            for domain, age in database.by_domain:
                f.inbound.add_metric([domain], age)
            if database.last_audit is not None:
                for kind, count in sorted(database.last_audit.counts.items()):
                    f.audit_inconsistencies.add_metric([kind], float(count))
                f.audit_last_run.add_metric([], database.last_audit.finished_at.timestamp())
        f.threshold.add_metric([], self.silence_threshold_seconds)
        yield from f.all()

    def _families(self) -> _Families:
        return _Families(
            queue_depth=GaugeMetricFamily(
                "kave_queue_depth",
                "Tasks waiting in the Celery queue (Redis LLEN), read at scrape time",
                labels=["queue"],
            ),
            queue_unacked=GaugeMetricFamily(
                "kave_queue_unacked",
                "Tasks taken by workers and not yet acknowledged (running, or waiting to retry)",
            ),
            deliveries_unfinished=GaugeMetricFamily(
                "kave_deliveries_unfinished",
                "Deliveries a worker started but has not finished (deliveries.status = received)",
            ),
            oldest_unfinished_age=GaugeMetricFamily(
                "kave_oldest_unfinished_delivery_age_seconds",
                "Age of the oldest accepted delivery without a result: the oldest queued task "
                "or the oldest started but unfinished delivery; 0 when there is none",
            ),
            dead_letters_open=GaugeMetricFamily(
                "kave_dead_letters_open",
                "Dead letters waiting for a replay or a discard (dead_letters.status = open)",
            ),
            queue_age=GaugeMetricFamily(
                "kave_queue_oldest_task_age_seconds",
                "Seconds since the receiver accepted the delivery of the oldest task waiting "
                "in the Celery queue; 0 when the queue is empty",
                labels=["queue"],
            ),
            inbound=GaugeMetricFamily(
                "kave_inbound_last_email_age_seconds",
                "Seconds since the last inbound email was stored, for all mail and the "
                "busiest recipient domains; +Inf when none ever was",
                labels=["domain"],
            ),
            threshold=GaugeMetricFamily(
                "kave_inbound_silence_threshold_seconds",
                "How long inbound mail may be silent before KaveNoInboundMail fires",
            ),
            source_up=GaugeMetricFamily(
                "kave_api_metrics_source_up",
                "1 if the last scrape could read this source (redis, postgresql), else 0 "
                "(its backlog gauges are then NaN and its alerting series left out)",
                labels=["source"],
            ),
            audit_inconsistencies=GaugeMetricFamily(
                "kave_audit_inconsistencies",
                "Inconsistencies the last `kave audit` left (after --repair), by kind",
                labels=["kind"],
            ),
            audit_last_run=GaugeMetricFamily(
                "kave_audit_last_run_timestamp_seconds",
                "When the last `kave audit` finished (Unix time)",
            ),
        )

    def _read_queue(self) -> _Queue | None:
        try:
            # kombu LPUSHes and workers BRPOP: the oldest messages are at the tail.
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.llen(self.queue_name)
                pipe.hlen(UNACKED_HASH)
                pipe.lrange(self.queue_name, -QUEUE_TAIL_SCAN, -1)
                depth, unacked, tail = pipe.execute()
        except Exception as exc:
            log.warning("metrics.source_failed", source="redis", error_type=type(exc).__name__)
            return None
        accepted = [when for when in map(message_accepted_at, tail) if when is not None]
        return _Queue(int(depth), int(unacked), min(accepted) if depth and accepted else None)

    def _read_database(self) -> _Database | None:
        timeout_ms = max(int(self.timeout * 1000), 1)
        try:
            with self.engine.connect() as connection:
                # A slow query must not outlive the scrape.
                connection.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
                unfinished, oldest = connection.execute(_UNFINISHED).one()
                dead_letters = connection.execute(_DEAD_LETTERS_OPEN).scalar_one()
                all_age = connection.execute(_ALL_AGE).scalar_one()
                rows = connection.execute(
                    _DOMAIN_AGES,
                    {"lookback": self.domain_lookback_seconds, "top": self.top_domains},
                ).all()
                last_audit = connection.execute(
                    select(AuditRun.finished_at, AuditRun.counts)
                    .order_by(AuditRun.finished_at.desc())
                    .limit(1)
                ).one_or_none()
                connection.rollback()
        except Exception as exc:
            log.warning("metrics.source_failed", source="postgresql", error_type=type(exc).__name__)
            return None
        return _Database(
            unfinished=int(unfinished),
            oldest_unfinished_at=oldest,
            dead_letters_open=int(dead_letters),
            all_age=math.inf if all_age is None else max(0.0, float(all_age)),
            by_domain=[(str(domain), max(0.0, float(age))) for domain, age in rows if domain],
            last_audit=last_audit,
        )


def _age(since: datetime | None) -> float:
    """Seconds since ``since``; 0 when there is nothing to age."""
    return 0.0 if since is None else max(0.0, time.time() - since.timestamp())


def _oldest_unfinished_age(queue: _Queue | None, database: _Database | None) -> float:
    if queue is None and database is None:
        return math.nan
    oldest = [
        when
        for when in (
            queue.oldest_accepted_at if queue else None,
            database.oldest_unfinished_at if database else None,
        )
        if when is not None
    ]
    return _age(min(oldest)) if oldest else 0.0


def message_accepted_at(raw: bytes | None) -> datetime | None:
    """When the receiver accepted the delivery of a queued kombu message, if it says."""
    if not raw:
        return None
    try:
        message: dict[str, Any] = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        received = datetime.fromisoformat(body[1]["envelope"]["received_at"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return received if received.tzinfo else received.replace(tzinfo=UTC)
