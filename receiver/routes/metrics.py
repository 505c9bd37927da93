"""Prometheus ``/metrics`` of this receiver process (unauthenticated, outside /api/v1).

Serve it to Prometheus only: publish the receiver to Mandrill through a proxy that
routes ``/api/v1/webhooks/...`` and nothing else, or block ``/metrics`` there.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.metrics import ReceiverMetrics
from shared.settings import Settings

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics of this receiver", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    receiver_metrics: ReceiverMetrics = state.metrics
    await receiver_metrics.refresh_backlog(
        redis=state.redis,
        engine=state.engine,
        queue_name=settings.queue_name,
        timeout=settings.metrics_query_timeout_seconds,
    )
    return Response(generate_latest(receiver_metrics.registry), media_type=CONTENT_TYPE_LATEST)
