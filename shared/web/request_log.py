"""One ``request.finished`` record per HTTP request, the same in the receiver and the API:
the request counter and duration histogram by route template, and one log line, kept by
:class:`RequestMetricsMiddleware`."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.web.route_template import route_template

log = structlog.get_logger(__name__)

# Probes and scrapes are logged at debug level: at INFO they would drown everything else.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Buckets of both apps' request duration histograms, in seconds.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def record_request(
    requests: Counter,
    duration: Histogram,
    scope: Scope,
    status: int,
    elapsed: float,
    **fields: Any,
) -> str:
    """Count, time and log a finished request; the route template it was counted under.

    ``requests`` is labelled (route, method, status_class) and ``duration`` (route): the
    template, never the raw path, so label values stay bounded.
    """
    template = route_template(scope)
    method = scope["method"]
    requests.labels(template, method, f"{status // 100}xx").inc()
    duration.labels(template).observe(elapsed)
    log.log(
        logging.DEBUG if scope["path"] in QUIET_PATHS else logging.INFO,
        "request.finished",
        method=method,
        route=template,
        status=status,
        duration_ms=round(elapsed * 1000, 1),
        **fields,
    )
    return template


class RequestMetrics(Protocol):
    """What an app's metrics hold for :class:`RequestMetricsMiddleware`."""

    requests: Counter
    request_duration: Histogram


class RequestMetricsMiddleware:
    """Counts, times and logs every request (:func:`record_request`), with the body size
    received. Pure ASGI (no BaseHTTPMiddleware: it costs a task per request). An app that
    counts more per request overrides :meth:`recorded`."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts
        # What the app leaves on request.state is read in recorded(): make sure every
        # layer below shares this one dict (routing copies the scope).
        scope.setdefault("state", {})
        body_size = 0

        async def counting_receive() -> Message:
            nonlocal body_size
            message = await receive()
            if message["type"] == "http.request":
                body_size += len(message.get("body", b""))
            return message

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, counting_receive, status_send)
        finally:
            metrics = self.metrics
            template = record_request(
                metrics.requests,
                metrics.request_duration,
                scope,
                status,
                time.perf_counter() - started,
                body_size=body_size,
            )
            self.recorded(scope, template, status, body_size)

    def recorded(self, scope: Scope, template: str, status: int, body_size: int) -> None:
        """Called once the request is recorded, under route ``template``; nothing here."""
