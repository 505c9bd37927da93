"""The management API's Prometheus metrics.

Every request gets one ``request.finished`` log line (method, route template, status,
duration) and is counted and timed by route template, never by raw path (unbounded
label values would grow Prometheus without limit): shared/web/request_log.py. Each app
owns its registry; each API process serves its own ``/metrics``, with the pipeline gauges
(api/pipeline_metrics.py).
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from shared.settings import Settings
from shared.web.metrics_token import require_metrics_token
from shared.web.request_log import REQUEST_BUCKETS


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


router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics of this API process", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    require_metrics_token(request, settings)
    api_metrics: ApiMetrics = state.metrics
    # The pipeline collector reads PostgreSQL and Redis with blocking clients
    # while the registry is rendered: keep that off the event loop.
    body = await anyio.to_thread.run_sync(generate_latest, api_metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
