"""``kave_audit_inconsistencies{kind}``: what the newest ``kave audit`` run found.

A scrape-time collector over the ``audit_runs`` table (one small query), registered on
the management API's ``/metrics`` next to the pipeline gauges, so every replica reports
the same values. ``kave_audit_last_run_timestamp_seconds`` says when that run finished:
alert on it too, or a stopped audit looks clean forever. No series before the first run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, select

from shared.models import AuditRun

log = structlog.get_logger(__name__)


class AuditCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(self, registry: CollectorRegistry) -> AuditCollector:
        registry.register(self)
        return self

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        inconsistencies, last_run = self._families()
        try:
            with self.engine.connect() as connection:
                row = connection.execute(
                    select(AuditRun.finished_at, AuditRun.counts)
                    .order_by(AuditRun.finished_at.desc())
                    .limit(1)
                ).one_or_none()
        except Exception as exc:
            log.warning("metrics.source_failed", source="audit", error_type=type(exc).__name__)
            row = None
        if row is not None:
            for kind, count in sorted(row.counts.items()):
                inconsistencies.add_metric([kind], float(count))
            last_run.add_metric([], row.finished_at.timestamp())
        yield from (inconsistencies, last_run)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "kave_audit_inconsistencies",
                "Inconsistencies the last `kave audit` left (after --repair), by kind",
                labels=["kind"],
            ),
            GaugeMetricFamily(
                "kave_audit_last_run_timestamp_seconds",
                "When the last `kave audit` finished (Unix time)",
            ),
        )
