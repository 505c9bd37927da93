"""Prometheus ``/metrics`` of this receiver process, outside /api/v1, behind a bearer token.

The receiver serves Mandrill on a public port, and its metrics would tell anyone there
how much mail arrives. So with ``KAVE_METRICS_TOKEN`` set (required in production)
``/metrics`` answers only ``Authorization: Bearer <token>`` (Prometheus:
``authorization: {credentials: <token>}`` in the scrape config) and 401 to anything else.
Without it (development, test) it is open. The pipeline's backlog gauges are on the
management API's ``/metrics``.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.errors import UnauthorizedError
from receiver.metrics import ReceiverMetrics
from shared.settings import Settings

router = APIRouter(tags=["metrics"])


def _check_token(request: Request, settings: Settings) -> None:
    if settings.metrics_token is None:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value().encode("utf-8")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode("utf-8", "replace"), expected
    ):
        raise UnauthorizedError(
            "/metrics needs Authorization: Bearer with the KAVE_METRICS_TOKEN of this deployment",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get("/metrics", summary="Prometheus metrics of this receiver", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    _check_token(request, settings)
    receiver_metrics: ReceiverMetrics = state.metrics
    return Response(generate_latest(receiver_metrics.registry), media_type=CONTENT_TYPE_LATEST)
