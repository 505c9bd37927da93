"""The management API's request log and Prometheus metrics.

Every request gets one ``request.finished`` log line (method, route template, status,
duration) and is counted and timed by route template, never by raw path (unbounded
label values would grow Prometheus without limit). Each app owns its registry; each API
process serves its own ``/metrics``, with the pipeline gauges (shared/pipeline_metrics.py).
"""

from __future__ import annotations

import time

import anyio
import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import Settings
from shared.web.metrics_token import require_metrics_token
from shared.web.request_log import record_request

log = structlog.get_logger(__name__)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kave_api_requests",
            "HTTP requests answered by the management API, by route template, method and "
            "status class",
            ["route", "method", "status_class"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "kave_api_request_duration_seconds",
            "Time to answer a management API request, by route template",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )


class RequestMetricsMiddleware:
    """Counts, times and logs every request. Pure ASGI (no BaseHTTPMiddleware: it costs
    a task per request)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            record_request(
                self.metrics.requests,
                self.metrics.request_duration,
                scope,
                status,
                time.perf_counter() - started,
            )


router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics of this API process", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    require_metrics_token(request, settings)
    api_metrics: ApiMetrics = state.metrics
    # The pipeline and audit collectors read PostgreSQL and Redis with blocking clients
    # while the registry is rendered: keep that off the event loop.
    body = await anyio.to_thread.run_sync(generate_latest, api_metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
