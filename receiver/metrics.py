"""The receiver's Prometheus metrics.

Each app owns its registry (no process-global state, so tests can build many apps), and
each receiver process serves its own ``/metrics``: run one uvicorn process per container
and scrape every replica. Counters and histograms are recorded on the request path by
:class:`MetricsMiddleware` and :class:`MeteredDeliveryQueue`. The pipeline's backlog
gauges (queue depth, oldest unfinished delivery, open dead letters) are the management
API's (api/pipeline_metrics.py): the receiver runs no monitoring queries.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Scope

from receiver.enqueue import DeliveryQueue
from receiver.signature import Verdict, verdict_of
from shared.contract import Envelope
from shared.web.request_log import REQUEST_BUCKETS, RequestMetricsMiddleware

MIB = 1024 * 1024
ENQUEUE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0)
BODY_BUCKETS = (1024, 10 * 1024, 100 * 1024, MIB, 5 * MIB, 10 * MIB, 25 * MIB, 55 * MIB, 100 * MIB)


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "kave_receiver_requests",
            "HTTP requests answered, by route template, method and status class",
            ["route", "method", "status_class"],
            registry=r,
        )
        self.request_duration = Histogram(
            "kave_receiver_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "kave_receiver_webhook_requests",
            "Webhook POSTs by outcome (accepted, rejected, unavailable, error) and status",
            ["outcome", "status"],
            registry=r,
        )
        self.signature_failures = Counter(
            "kave_receiver_signature_failures",
            "Webhook POSTs refused for their signature (missing header, or no key matches)",
            ["reason"],
            registry=r,
        )
        self.webhook_refusals = Counter(
            "kave_receiver_webhook_refusals",
            "Webhook POSTs the gate refused, by its verdict (missing, mismatch, too_large, "
            "bad_media_type, bad_form, too_many_fields, not_configured, limited)",
            ["reason"],
            registry=r,
        )
        self.enqueue_duration = Histogram(
            "kave_receiver_enqueue_duration_seconds",
            "Time to make an accepted batch durable (store the body, publish the task)",
            ["outcome"],
            buckets=ENQUEUE_BUCKETS,
            registry=r,
        )
        self.body_size = Histogram(
            "kave_receiver_body_size_bytes",
            "Size of accepted webhook bodies",
            buckets=BODY_BUCKETS,
            registry=r,
        )

    # --- request path ---------------------------------------------------------------

    def observe_webhook(self, status: int, verdict: Verdict | None, body_size: int) -> None:
        """One webhook POST, as answered and as the gate judged it (None: it never ran)."""
        self.webhooks.labels(webhook_outcome(status), str(status)).inc()
        if verdict is not None and verdict is not Verdict.OK:
            self.webhook_refusals.labels(verdict.value).inc()
            if verdict in (Verdict.MISSING, Verdict.MISMATCH):
                self.signature_failures.labels(verdict.value).inc()
        if status == 200:
            self.body_size.observe(body_size)


def webhook_outcome(status: int) -> str:
    if status == 200:
        return "accepted"
    if status == 503:
        return "unavailable"  # not durable: Mandrill retries
    if 400 <= status < 500:
        return "rejected"
    return "error"


class MeteredDeliveryQueue(DeliveryQueue):
    """The delivery queue, timing how long each batch takes to become durable."""

    def __init__(self, metrics: ReceiverMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    async def enqueue(self, body: bytes, request_id: str) -> Envelope:
        started = time.perf_counter()
        outcome = "failed"
        try:
            envelope = await super().enqueue(body, request_id)
            outcome = "ok"
        finally:
            self.metrics.enqueue_duration.labels(outcome).observe(time.perf_counter() - started)
        return envelope


class MetricsMiddleware(RequestMetricsMiddleware):
    """The request record of every request (:class:`RequestMetricsMiddleware`) and, for a
    webhook POST, its outcome, counted by the verdict the gate left on ``request.state``
    (:func:`receiver.signature.verdict_of`), never worked out again from its headers or
    status."""

    def __init__(self, app: ASGIApp, metrics: ReceiverMetrics, webhook_path: str) -> None:
        super().__init__(app, metrics)
        self.receiver_metrics = metrics
        self.webhook_path = webhook_path

    def recorded(self, scope: Scope, template: str, status: int, body_size: int) -> None:
        if template == self.webhook_path and scope["method"] == "POST":
            self.receiver_metrics.observe_webhook(status, verdict_of(scope), body_size)
