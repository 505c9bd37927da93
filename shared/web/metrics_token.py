"""The bearer token in front of ``/metrics`` (``KAVE_METRICS_TOKEN``), for both apps.

The metrics say how much mail arrives and how far behind the workers are: the receiver
serves them on its public port, the API on an internal one, and both ask for the same
token when it is set (required in production; unset in development and test: open).
It is checked before anything is read from Redis or PostgreSQL.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from shared.settings import Settings
from shared.web.errors import UnauthorizedError


def require_metrics_token(request: Request, settings: Settings) -> None:
    """Raise 401 unless the request carries ``Authorization: Bearer <KAVE_METRICS_TOKEN>``."""
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
