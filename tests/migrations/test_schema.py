"""The migrations are the schema: `upgrade head` on an empty database equals the models."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, text

from shared.db import normalise_database_url
from shared.migrate import MIGRATIONS_DIR, upgrade_to_head
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


# Everything `upgrade head` could change in the public schema, as PostgreSQL describes it.
_SCHEMA_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY table_name, column_name""",
    "constraints": """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public' ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' ORDER BY 1, 2""",
    "types": """
        SELECT t.typname, e.enumlabel FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        LEFT JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c') AND t.typrelid = 0
        ORDER BY 1, e.enumsortorder""",
    "sequences": """
        SELECT sequence_name, data_type, increment FROM information_schema.sequences
        WHERE sequence_schema = 'public' ORDER BY 1""",
    "triggers": """
        SELECT event_object_table, trigger_name, action_statement
        FROM information_schema.triggers WHERE trigger_schema = 'public' ORDER BY 1, 2""",
}


def _revision_and_schema(url: str) -> tuple[str | None, dict[str, list[Any]]]:
    engine = create_engine(normalise_database_url(url))
    try:
        with engine.connect() as connection:
            return _current_revision(connection), {
                name: [tuple(row) for row in connection.execute(text(query))]
                for name, query in _SCHEMA_QUERIES.items()
            }
    finally:
        engine.dispose()


def _current_revision(connection: Connection) -> str | None:
    """What `alembic current` shows."""
    return MigrationContext.configure(connection).get_current_revision()


def test_upgrade_head_twice_is_a_no_op(postgres_admin_url: str) -> None:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with fresh_database(postgres_admin_url) as url:
        upgrade_to_head(url)
        revision, schema = _revision_and_schema(url)
        upgrade_to_head(url)
        revision_again, schema_again = _revision_and_schema(url)
    assert revision == head
    assert revision_again == head
    assert schema["columns"]  # the snapshot sees the tables
    assert schema_again == schema
