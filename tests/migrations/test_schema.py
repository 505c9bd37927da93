"""The migrations are the schema: `upgrade head` on an empty database equals the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from shared.db import normalise_database_url
from shared.migrate import upgrade_to_head
from shared.models import Base
from tests.services import fresh_database


def test_upgrade_head_matches_the_models(postgres_admin_url: str) -> None:
    with fresh_database(postgres_admin_url) as url:
        upgrade_to_head(url)
        engine = create_engine(normalise_database_url(url))
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(
                    connection, opts={"compare_type": True, "compare_server_default": True}
                )
                differences = compare_metadata(context, Base.metadata)
                tables = set(inspect(connection).get_table_names())
        finally:
            engine.dispose()
    assert differences == []
    assert set(Base.metadata.tables) <= tables


def test_upgrade_head_twice_is_a_no_op(postgres_admin_url: str) -> None:
    with fresh_database(postgres_admin_url) as url:
        upgrade_to_head(url)
        upgrade_to_head(url)
