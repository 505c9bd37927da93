"""Prometheus ``/metrics`` of this receiver process (unauthenticated, outside /api/v1).

Serve it to Prometheus only: publish the receiver to Mandrill through a proxy that
routes ``/api/v1/webhooks/...`` and nothing else, or block ``/metrics`` there. The
pipeline's backlog gauges are on the management API's ``/metrics``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.metrics import ReceiverMetrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics of this receiver", include_in_schema=False)
async def metrics(request: Request) -> Response:
    receiver_metrics: ReceiverMetrics = request.app.state.metrics
    return Response(generate_latest(receiver_metrics.registry), media_type=CONTENT_TYPE_LATEST)
