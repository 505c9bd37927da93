"""Scrape-time gauges the alert rules need: how old the queue's oldest task is, and how
long inbound mail has been silent.

A prometheus_client custom collector: nothing is recorded on the request path; every
value is read from Redis and PostgreSQL when Prometheus scrapes, so any number of
replicas report the same values (aggregate with ``max``/``min``, never ``sum``).
Registering it is one line wherever a process serves ``/metrics``::

    PipelineCollector(engine, redis, settings.queue_name).register(registry)

``redis`` is a synchronous ``redis.Redis`` and :meth:`collect` blocks (each source is
bounded by ``timeout`` seconds): serve the registry from a thread
(``prometheus_client.start_http_server``, or ``generate_latest`` via
``anyio.to_thread.run_sync``), never directly on an event loop.

Series (deploy/prometheus/kave-rules.yml alerts on them):

- ``kave_queue_oldest_task_age_seconds{queue}``: seconds since the receiver accepted the
  delivery of the oldest task still waiting in the Celery queue; 0 when it is empty.
- ``kave_inbound_last_email_age_seconds{domain}``: seconds since the last inbound email
  was stored, for ``domain="all"`` and for the ``top_domains`` recipient domains with the
  most mail over ``domain_lookback_seconds`` (a bounded label set, and a domain that goes
  silent keeps its series for the whole lookback). ``+Inf`` for "all" when no email was
  ever stored: a deployment whose mail never arrives is as broken as one where it stopped.
- ``kave_inbound_silence_threshold_seconds``: how long inbound mail may be silent before
  the ``KaveNoInboundMail`` alert fires (configurable here, not in the rules file).
- ``kave_pipeline_metrics_source_up{source}``: 1 if the last scrape could read that
  source (redis, postgresql); its series are left out otherwise.

Dispatch failures (outbound forwarding) have no metric yet: that feature does not exist.
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
from sqlalchemy import Engine, text

log = structlog.get_logger(__name__)

ALL_DOMAINS = "all"
DEFAULT_SILENCE_THRESHOLD_SECONDS = 6 * 3600.0
# The oldest message may be a task without an envelope (reconcile, replay): look a few
# messages further for one that says when its delivery was accepted.
QUEUE_TAIL_SCAN = 10

_DOMAIN_AGES = text(
    """
    SELECT lower(split_part(envelope_recipient, '@', 2)) AS domain,
           extract(epoch FROM now() - max(received_at)) AS age
    FROM emails
    WHERE received_at > now() - make_interval(secs => :lookback)
      AND envelope_recipient LIKE '%@%'
    GROUP BY 1
    ORDER BY count(*) DESC, 1
    LIMIT :top
    """
)
_ALL_AGE = text("SELECT extract(epoch FROM now() - max(received_at)) FROM emails")


@dataclass(frozen=True)
class _Inbound:
    all_age: float  # +Inf when no email was ever stored
    by_domain: list[tuple[str, float]]


class PipelineCollector(Collector):
    """Reads the queue's oldest task and the inbound silence at every scrape."""

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
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue_age, inbound, threshold, up = self._families()
        oldest = self._read_queue()
        if oldest is not None:
            queue_age.add_metric([self.queue_name], oldest)
        up.add_metric(["redis"], 0.0 if oldest is None else 1.0)
        state = self._read_inbound()
        if state is not None:
            inbound.add_metric([ALL_DOMAINS], state.all_age)
            for domain, age in state.by_domain:
                inbound.add_metric([domain], age)
        up.add_metric(["postgresql"], 0.0 if state is None else 1.0)
        threshold.add_metric([], self.silence_threshold_seconds)
        yield from (queue_age, inbound, threshold, up)

    def _families(
        self,
    ) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "kave_queue_oldest_task_age_seconds",
                "Seconds since the receiver accepted the delivery of the oldest task waiting "
                "in the Celery queue; 0 when the queue is empty",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                "kave_inbound_last_email_age_seconds",
                "Seconds since the last inbound email was stored, for all mail and the "
                "busiest recipient domains; +Inf when none ever was",
                labels=["domain"],
            ),
            GaugeMetricFamily(
                "kave_inbound_silence_threshold_seconds",
                "How long inbound mail may be silent before KaveNoInboundMail fires",
            ),
            GaugeMetricFamily(
                "kave_pipeline_metrics_source_up",
                "1 if the last scrape could read this source (redis, postgresql), else 0 "
                "(its series are then left out)",
                labels=["source"],
            ),
        )

    def _read_queue(self) -> float | None:
        try:
            # kombu LPUSHes and workers BRPOP: the oldest messages are at the tail.
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.llen(self.queue_name)
                pipe.lrange(self.queue_name, -QUEUE_TAIL_SCAN, -1)
                depth, tail = pipe.execute()
        except Exception as exc:
            log.warning("metrics.source_failed", source="redis", error_type=type(exc).__name__)
            return None
        if not depth:
            return 0.0
        accepted = [when for when in map(message_accepted_at, tail) if when is not None]
        if not accepted:
            return 0.0  # only tasks without an envelope: no age to tell
        return max(0.0, time.time() - min(accepted).timestamp())

    def _read_inbound(self) -> _Inbound | None:
        timeout_ms = max(int(self.timeout * 1000), 1)
        try:
            with self.engine.connect() as connection:
                # A slow query must not outlive the scrape.
                connection.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
                all_age = connection.execute(_ALL_AGE).scalar_one()
                rows = connection.execute(
                    _DOMAIN_AGES,
                    {"lookback": self.domain_lookback_seconds, "top": self.top_domains},
                ).all()
                connection.rollback()
        except Exception as exc:
            log.warning("metrics.source_failed", source="postgresql", error_type=type(exc).__name__)
            return None
        return _Inbound(
            all_age=math.inf if all_age is None else max(0.0, float(all_age)),
            by_domain=[(str(domain), max(0.0, float(age))) for domain, age in rows if domain],
        )


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
