"""The receiver application: built by :func:`create_app`, nothing happens at import.

Run with ``uvicorn receiver.app:create_app --factory``. It serves only what Mandrill and
the operator's probes need: the webhook (HEAD, GET, POST), ``/healthz``, ``/readyz`` and
``/metrics``. No docs, no OpenAPI document, no CORS, no users: the management API is an
app of its own (``api.app:create_app``), in a process of its own, so neither its bugs nor
its heavy queries share this event loop or this published port.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from receiver.body import BodyPace
from receiver.enqueue import ReplicaAck
from receiver.in_flight import InFlight
from receiver.metrics import MeteredDeliveryQueue, MetricsMiddleware, ReceiverMetrics
from receiver.routes import metrics, webhooks
from receiver.webhook_limit import WebhookFailureLimit
from shared.accepted import AcceptedLedger
from shared.logging import configure_logging
from shared.objectstore import make_object_store
from shared.queue import make_producer
from shared.redis_connect import async_redis_client
from shared.settings import Settings, get_settings
from shared.web import health
from shared.web.errors import install_error_handlers
from shared.web.request_id import RequestIdMiddleware
from shared.webhook import WEBHOOK_PATH


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    timeout = max(settings.enqueue_timeout_seconds, 0.5)
    redis = async_redis_client(settings, socket_timeout=timeout, socket_connect_timeout=timeout)
    producer = make_producer(settings, "kave-receiver")
    object_store = make_object_store(settings)
    app.state.redis = redis
    app.state.webhook_limit = WebhookFailureLimit(settings, redis)
    app.state.delivery_queue = MeteredDeliveryQueue(
        metrics=app.state.metrics,
        redis=redis,
        celery=producer,
        object_store=object_store,
        claim_check_threshold=settings.claim_check_threshold_bytes,
        timeout_seconds=settings.enqueue_timeout_seconds,
        ledger=AcceptedLedger(settings.queue_name),
        replica_ack=ReplicaAck(
            settings.redis_min_replicas_ack, settings.redis_replicas_ack_timeout_seconds
        ),
    )
    # Objects created so far live as long as the app: move them out of the collector's
    # view, so full collections under load stay short (long ones showed as p99 stalls).
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        await redis.aclose()
        producer.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.require_process("receiver")
    configure_logging(settings, process="receiver")
    # No OpenAPI document and no docs: Mandrill needs neither, and every route served
    # here is one more thing on the public internet.
    app = FastAPI(
        title="Kave receiver",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.in_flight = InFlight(settings)
    app.state.body_pace = BodyPace.from_settings(settings)
    install_error_handlers(app)
    app.state.metrics = ReceiverMetrics()
    # Inside RequestIdMiddleware (added after it), so its log line has the request id.
    app.add_middleware(
        MetricsMiddleware,
        metrics=app.state.metrics,
        webhook_path=WEBHOOK_PATH,
    )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(webhooks.router)
    app.router.routes.append(webhooks.batch_route())
    app.include_router(health.router)
    app.include_router(metrics.router)
    return app
