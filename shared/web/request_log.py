"""One ``request.finished`` record per HTTP request, the same in the receiver and the API:
the request counter and duration histogram by route template, and one log line."""

from __future__ import annotations

import logging
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import Scope

from shared.web.route_template import route_template

log = structlog.get_logger(__name__)

# Probes and scrapes are logged at debug level: at INFO they would drown everything else.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


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
