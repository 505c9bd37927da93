"""Database engine and session factories (SQLAlchemy 2, psycopg 3).

One engine per process: workers build theirs after the fork (see ``worker.celery_app``),
so no connection is ever shared between processes.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import Settings


def normalise_database_url(url: str) -> str:
    """Accept the common ``postgresql://`` spelling and use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def connect_args(settings: Settings) -> dict[str, Any]:
    """libpq parameters: bounded waits for a server that does not answer or a statement
    that does not end (without them, a silent server holds a worker ~130 s per connect
    and a stuck statement holds it until the task's hard time limit)."""
    args: dict[str, Any] = {"connect_timeout": settings.database_connect_timeout_seconds}
    if settings.database_statement_timeout_ms:
        args["options"] = f"-c statement_timeout={settings.database_statement_timeout_ms}"
    return args


# A pooled connection handed back less than this long ago is not pinged at checkout.
PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(settings: Settings) -> Engine:
    engine = create_engine(
        normalise_database_url(settings.require_database_url()),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        # Bound values are email content (subjects, bodies, addresses): without this,
        # every database error carries them as "[parameters: ...]" into tracebacks,
        # logs, Celery's retry/failure events and so Flower.
        hide_parameters=True,
        connect_args=connect_args(settings),
    )
    if settings.db_pool_pre_ping:
        _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's pre-ping, for connections that sat in the pool a while only.

    ``pool_pre_ping`` pings at every checkout: a worker checks a connection out twice
    per delivery, a round trip each, for connections it used a few milliseconds
    before. One that has been idle is pinged as before (a server restarted meanwhile is
    noticed there, and the pool replaces the connection); one that fails anyway is
    found by its first statement: SQLAlchemy sees the disconnect, empties the pool, and
    the task's retry gets fresh connections. (The pool's documented "checkout" event
    with ``DisconnectionError``; the ping is the dialect's own.)
    """

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _idle_from_now(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError from exc


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
