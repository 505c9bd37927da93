"""The receiver application: built by :func:`create_app`, nothing happens at import.

Run with ``uvicorn receiver.app:create_app --factory``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from celery import Celery
from fastapi import FastAPI
from redis.asyncio import Redis

from receiver.enqueue import DeliveryQueue
from receiver.errors import install_error_handlers
from receiver.request_id import RequestIdMiddleware
from receiver.routes import health, webhooks
from shared.db import make_engine
from shared.logging import configure_logging
from shared.objectstore import make_object_store
from shared.queue import celery_config
from shared.settings import Settings, get_settings

API_PREFIX = "/api/v1"


def _make_producer(settings: Settings) -> Celery:
    producer = Celery("kave-receiver", set_as_current=False)
    producer.conf.update(celery_config(settings))
    return producer


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    timeout = max(settings.enqueue_timeout_seconds, 0.5)
    redis = Redis.from_url(
        settings.require_redis_url(), socket_timeout=timeout, socket_connect_timeout=timeout
    )
    producer = _make_producer(settings)
    engine = make_engine(settings)
    app.state.redis = redis
    app.state.engine = engine
    app.state.delivery_queue = DeliveryQueue(
        redis=redis,
        celery=producer,
        object_store=make_object_store(settings),
        claim_check_threshold=settings.claim_check_threshold_bytes,
        timeout_seconds=settings.enqueue_timeout_seconds,
    )
    try:
        yield
    finally:
        await redis.aclose()
        producer.close()
        engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings, process="receiver")
    app = FastAPI(
        title="Kave",
        summary="Inbound email from Mandrill webhooks into PostgreSQL and S3",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(webhooks.router, prefix=API_PREFIX)
    app.include_router(health.router)
    return app
