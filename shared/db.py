"""Database engine and session factories (SQLAlchemy 2, psycopg 3).

One engine per process: workers build theirs after the fork (see ``worker.celery_app``),
so no connection is ever shared between processes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine
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


def make_engine(settings: Settings) -> Engine:
    return create_engine(
        normalise_database_url(settings.require_database_url()),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_pre_ping=settings.db_pool_pre_ping,
        # Bound values are email content (subjects, bodies, addresses): without this,
        # every database error carries them as "[parameters: ...]" into tracebacks,
        # logs, Celery's retry/failure events and so Flower.
        hide_parameters=True,
        connect_args=connect_args(settings),
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
