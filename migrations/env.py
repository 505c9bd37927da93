"""Alembic environment: the only way Kave's schema changes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from shared.db import normalise_database_url
from shared.models import Base
from shared.settings import get_settings

target_metadata = Base.metadata


def _database_url() -> str:
    # `kave migrate` and the tests pass the URL explicitly; otherwise use the settings.
    url = context.config.attributes.get("database_url")
    return normalise_database_url(url or get_settings().require_database_url())


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
