"""Database engine and session factories (SQLAlchemy 2, psycopg 3).

One engine per process: workers build theirs after the fork (see ``worker.celery_app``),
so no connection is ever shared between processes.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import Settings


def normalise_database_url(url: str) -> str:
    """Accept the common ``postgresql://`` spelling and use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(settings: Settings) -> Engine:
    return create_engine(
        normalise_database_url(settings.require_database_url()),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_pre_ping=settings.db_pool_pre_ping,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
