"""Prometheus ``/metrics`` of this receiver process, outside /api/v1, behind a bearer token.

The receiver serves Mandrill on a public port, and its metrics would tell anyone there
how much mail arrives. So with ``KAVE_METRICS_TOKEN`` set (required in production)
``/metrics`` answers only ``Authorization: Bearer <token>`` (Prometheus:
``authorization: {credentials: <token>}`` in the scrape config) and 401 to anything else.
Without it (development, test) it is open. The pipeline's backlog gauges are on the
management API's ``/metrics``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.metrics import ReceiverMetrics
from shared.settings import Settings
from shared.web.metrics_token import require_metrics_token

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics of this receiver", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    require_metrics_token(request, settings)
    receiver_metrics: ReceiverMetrics = state.metrics
    return Response(generate_latest(receiver_metrics.registry), media_type=CONTENT_TYPE_LATEST)
