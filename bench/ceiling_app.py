"""The ceiling: a bare FastAPI endpoint that reads the body and answers, nothing else.

Served by the same uvicorn command line as the receiver (``bench.stack.uvicorn``), on the
same machine, in the same run, so the ratio receiver/ceiling shows what Kave's own work
(signature, durability, enqueue, logging) costs on top of HTTP + ASGI + FastAPI.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from shared.webhook import WEBHOOK_PATH


def create_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post(WEBHOOK_PATH)
    async def receive(request: Request) -> dict[str, str | None]:
        await request.body()
        return {"status": "accepted", "delivery_id": None}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
