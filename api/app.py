"""The management API application: built by :func:`create_app`, nothing happens at import.

Run with ``uvicorn api.app:create_app --factory`` (compose service ``api``). Serves
``/api/v1/...`` (JWT bearer tokens from ``POST /api/v1/auth/token``, per-user rate
limits), its docs at ``/api/v1/docs`` (Swagger UI from ``/api/v1/docs-assets``, no CDN)
and ``/api/v1/openapi.json``, ``/healthz`` and ``/readyz`` for its own probes, and
``/metrics`` of its own requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import metrics
from api.attachments import routes as attachments
from api.conversations import routes as conversations
from api.dead_letters import routes as dead_letters
from api.deliveries import routes as deliveries
from api.dispatches import routes as dispatches
from api.docs_page import install_docs
from api.emails import routes as emails
from api.events import routes as events
from api.mcp.server import MCP_PATH, KaveMcp
from api.metrics import ApiMetrics
from api.pipeline_metrics import PipelineCollector, scrape_redis
from api.ratelimit import ApiRateLimits
from api.search import routes as search
from api.stream import routes as stream
from api.stream.slots import StreamSlots
from api.tokens import routes as tokens
from shared.db import make_engine, make_session_factory
from shared.logging import configure_logging
from shared.objectstore import make_object_store
from shared.queue import make_producer
from shared.redis_connect import async_redis_client, redis_client
from shared.settings import Settings, get_settings
from shared.web import health
from shared.web.errors import install_error_handlers
from shared.web.request_id import RequestIdMiddleware
from shared.web.request_log import RequestMetricsMiddleware

API_PREFIX = "/api/v1"
# Redis answers the rate limits and takes replays; a request should fail fast, not hang.
REDIS_TIMEOUT_SECONDS = 2.0


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    redis = async_redis_client(
        settings,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )
    producer = make_producer(settings, "kave-api")
    engine = make_engine(settings)
    app.state.redis = redis
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.object_store = make_object_store(settings)
    app.state.producer = producer
    app.state.rate_limits = ApiRateLimits.build(settings, redis)
    app.state.stream_slots = StreamSlots(redis, settings.queue_name, settings.streams_per_caller)
    # The pipeline gauges (backlog, queue age, inbound silence) are read at scrape time
    # with a blocking Redis client of their own (/metrics renders them in a thread); the
    # (sync) erasure route removes the receiver's body copies with another, which retries.
    pipeline_redis = redis_client(
        settings,
        socket_timeout=settings.metrics_query_timeout_seconds,
        socket_connect_timeout=settings.metrics_query_timeout_seconds,
    )
    scrape_client = scrape_redis(settings, settings.metrics_query_timeout_seconds)
    pipeline_collector = PipelineCollector(
        engine,
        scrape_client,
        settings.queue_name,
        silence_threshold_seconds=settings.inbound_silence_alert_seconds,
        timeout=settings.metrics_query_timeout_seconds,
    ).register(app.state.metrics.registry)
    app.state.blocking_redis = pipeline_redis
    try:
        async with app.state.mcp.running():
            yield
    finally:
        app.state.metrics.registry.unregister(pipeline_collector)
        pipeline_redis.close()
        scrape_client.close()
        await redis.aclose()
        producer.close()
        engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.require_process("api")
    configure_logging(settings, process="api")
    app = FastAPI(
        title="Kave",
        summary="Inbound email from Mandrill webhooks into PostgreSQL and S3",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        # Served by install_docs below, from this process rather than a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = ApiMetrics()
    install_error_handlers(app)
    # Inside RequestIdMiddleware (added after it), so its log line has the request id.
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_origins:
        # Bearer tokens, not cookies: no credentials, so a "*" origin cannot leak a session.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Content-Disposition"],
            max_age=600,
        )
    install_docs(app, prefix=API_PREFIX)
    app.include_router(health.router)
    app.include_router(metrics.router)
    for router in (
        tokens,
        emails,
        attachments,
        conversations,
        search,
        stream,
        events,
        deliveries,
        dead_letters,
        dispatches,
    ):
        app.include_router(router.router, prefix=API_PREFIX)
    app.state.mcp = KaveMcp(version=app.version)
    app.mount(API_PREFIX + MCP_PATH, app.state.mcp.app)
    return app
