"""Liveness and readiness probes (unauthenticated, outside /api/v1)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis and PostgreSQL are reachable",
    responses={503: {"description": "A dependency is unreachable; `failing` names it."}},
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks = {"redis": _check_redis(state.redis), "postgresql": _check_database(state.engine)}
    results = await asyncio.gather(*checks.values())
    failing = [name for name, ok in zip(checks, results, strict=True) if not ok]
    if failing:
        return JSONResponse(
            {
                "status": "error",
                "message": "not ready: " + ", ".join(failing) + " unreachable",
                "failing": failing,
            },
            status_code=503,
        )
    return JSONResponse({"status": "ok", "failing": []})


async def _check_redis(redis: object) -> bool:
    try:
        await asyncio.wait_for(redis.ping(), PROBE_TIMEOUT_SECONDS)  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


async def _check_database(engine: object) -> bool:
    def ping() -> None:
        with engine.connect() as connection:  # type: ignore[attr-defined]
            connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), PROBE_TIMEOUT_SECONDS)
    except Exception:
        return False
    return True
