"""Liveness and readiness probes (unauthenticated, outside /api/v1).

``/healthz`` says the process answers; ``/readyz`` says it can do its work: Redis (the
queue, the rate limits) answers, and PostgreSQL too for an app that keeps an ``engine``
in its state. The receiver keeps none: its 200 needs only Redis (and the object store
for large bodies), so a database outage delays results without taking the webhook out
of a load balancer. A failing readiness names the failing part in the body and in a
warning log line, never a connection string or a password.
"""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from shared.web.probes import probe_for

router = APIRouter(tags=["health"])
log = structlog.get_logger(__name__)

PROBE_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis (and PostgreSQL, for the API) are reachable",
    responses={503: {"description": "A dependency is unreachable; `failing` names it."}},
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks = {"redis": _check_redis(state.redis)}
    engine: Engine | None = getattr(state, "engine", None)
    if engine is not None:
        checks["postgresql"] = _check_database(state, engine)
    errors = await asyncio.gather(*checks.values())
    failing = {name: error for name, error in zip(checks, errors, strict=True) if error}
    if failing:
        log.warning("readyz.failing", failing=list(failing), errors=failing)
        return JSONResponse(
            {
                "status": "error",
                "message": "not ready: " + ", ".join(failing) + " unreachable",
                "failing": list(failing),
            },
            status_code=503,
        )
    return JSONResponse({"status": "ok", "failing": []})


async def _check_redis(redis: object) -> str | None:
    """None when Redis answers, else the error type (never its message: it may hold a URL)."""
    try:
        await asyncio.wait_for(redis.ping(), PROBE_TIMEOUT_SECONDS)  # type: ignore[attr-defined]
    except Exception as exc:
        return type(exc).__name__
    return None


async def _check_database(state: object, engine: Engine) -> str | None:
    def ping() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await probe_for(state, "readyz-postgresql").run(ping, PROBE_TIMEOUT_SECONDS)
    except Exception as exc:
        return type(exc).__name__
    return None
