"""Per-process context of a worker: the settings it started with, its hand-off routes, and
its resources: one database engine, one Redis client, one object store (and, for S3, its
upload threads). Tasks get it from their base task (``worker.task_base``); the ingest
room sees the part it needs (``WorkerContext.ingest``), the hand-off builds its own view
from the same object (``worker.handoff.tasks.dispatch_context``).

They are created lazily in the process that uses them (a prefork child after the fork),
never inherited across a fork, so no connection is ever shared between processes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
import structlog
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext

from shared.accepted import AcceptedLedger
from shared.db import make_engine, make_session_factory
from shared.objectstore import make_object_store
from shared.redis_connect import redis_client
from shared.settings import Settings, get_settings
from worker.handoff.outbox import Outbox
from worker.handoff.routes import RouteTable, cached_routes
from worker.ingest.context import IngestContext
from worker.ingest.parsing import EmailLimits
from worker.ingest.scan import Scanner
from worker.ingest.trust import SenderTrust
from worker.interrupts import INTERRUPTS

log = structlog.get_logger(__name__)

# The soft time limit leaves a task a few seconds before the hard one.
CANCEL_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    # None: the hand-off is off (no KAVE_HANDOFF_ROUTES_FILE).
    routes: RouteTable | None
    ingest: IngestContext


@dataclass(frozen=True)
class _ProcessResources:
    pid: int
    engine: Engine
    context: WorkerContext


_current: _ProcessResources | None = None


def worker_context(settings: Settings | None = None) -> WorkerContext:
    """This process's context, made on first use (``settings``: those of that first use)."""
    global _current  # noqa: PLW0603 - one set of resources per process, by design
    if _current is None or _current.pid != os.getpid():
        settings = settings or get_settings()
        routes = (
            cached_routes(str(settings.handoff_routes_file))
            if settings.handoff_routes_file is not None
            else None
        )
        engine = make_engine(settings)
        event.listen(engine, "handle_error", _close_interrupted_connection)
        redis = redis_client(settings, socket_timeout=10, socket_connect_timeout=5)
        context = IngestContext(
            session_factory=make_session_factory(engine),
            object_store=make_object_store(settings),
            redis=redis,
            ledger=AcceptedLedger(settings.queue_name),
            max_worker_losses=settings.max_worker_losses,
            email_limits=email_limits(settings),
            uploads=_upload_threads(settings),
            outbox=Outbox(routes),
            sender_trust=(
                SenderTrust(settings.sender_trust_dns, settings.sender_trust_dns_timeout_seconds)
                if settings.sender_trust
                else None
            ),
            scanner=(
                Scanner(
                    settings.clamd_socket,
                    settings.clamd_timeout_seconds,
                    settings.clamd_attempts,
                )
                if settings.malware_scan
                else None
            ),
        )
        _current = _ProcessResources(
            pid=os.getpid(), engine=engine, context=WorkerContext(settings, routes, context)
        )
    return _current.context


def ingest_context(settings: Settings | None = None) -> IngestContext:
    """The ingest room's part of :func:`worker_context`."""
    return worker_context(settings).ingest


def _upload_threads(settings: Settings) -> ThreadPoolExecutor | None:
    """Threads that put objects while the worker goes on (``worker.pending_puts``), for
    S3, where each put waits on the network; started once per process (a pool per email
    cost ~1 ms of CPU an email). None for the local store, whose put is a write and an
    fsync: there the threads saved wall time with one process but cost more CPU (the
    GIL handed back and forth) than they saved once the processes fill the cores
    (BENCHMARKS.md)."""
    if settings.object_store != "s3" or settings.upload_concurrency <= 1:
        return None
    return ThreadPoolExecutor(
        max_workers=settings.upload_concurrency, thread_name_prefix="kave-upload"
    )


def _close_interrupted_connection(context: ExceptionContext) -> None:
    """A statement interrupted by the soft time limit leaves its connection mid-query.

    Cancel the statement on the server: closing the socket alone leaves the server
    process running it, and holding its transaction's locks (a new row's key, say),
    until it next talks to the client; the retry would wait on them. Then close the
    connection (as after a disconnect) instead of handing it back to the pool, where
    its rollback would fail with "another command is already in progress" and that
    error would replace the time limit as the attempt's failure.
    """
    if not isinstance(context.original_exception, INTERRUPTS):
        return
    dbapi_connection = (
        context.connection.connection.dbapi_connection if context.connection else None
    )
    if isinstance(dbapi_connection, psycopg.Connection):
        try:
            dbapi_connection.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)
        except psycopg.Error:
            log.warning("database.cancel_failed")  # the server ends it when it notices
    context.is_disconnect = True
    context.invalidate_pool_on_disconnect = False  # only this connection


def email_limits(settings: Settings) -> EmailLimits:
    return EmailLimits(
        max_mime_parts=settings.email_max_mime_parts,
        max_nesting_depth=settings.email_max_nesting_depth,
        max_header_bytes=settings.email_max_header_bytes,
        max_attachments=settings.email_max_attachments,
    )


def release() -> None:
    """Close this process's connections (on worker shutdown)."""
    global _current  # noqa: PLW0603
    if _current is not None and _current.pid == os.getpid():
        _current.engine.dispose()
        ingest = _current.context.ingest
        ingest.redis.close()
        if ingest.uploads is not None:
            ingest.uploads.shutdown(wait=False, cancel_futures=True)
    _current = None
