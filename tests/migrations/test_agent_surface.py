"""Migration 0013 on a database that already holds mail: emails stored before it get
their search document (the batched backfill), users keep their powers as roles, and
emails stored after it get their document from the trigger."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from shared.db import normalise_database_url
from shared.migrate import MIGRATIONS_DIR
from tests.services import fresh_database

_EMAIL = (
    "INSERT INTO emails (dedup_key, raw_sha256, raw_size, raw_key, delivery_id, subject, "
    'text_body, headers, "to", cc, bcc, reply_to, "references", tags, spam_rules) '
    "VALUES (:key, :key, 1, 'k', 'd', :subject, 'the quarterly invoices', '[]', '[]', '[]', "
    "'[]', '[]', '[]', '[]', '[]')"
)


def _upgrade(url: str, revision: str) -> None:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)


def test_existing_rows_are_searchable_and_users_keep_their_powers(postgres_admin_url: str) -> None:
    with fresh_database(postgres_admin_url) as url:
        _upgrade(url, "0009_bulk_forwarded")
        engine = create_engine(normalise_database_url(url))
        try:
            with engine.begin() as connection:
                connection.execute(
                    text(
                        "INSERT INTO deliveries (id, received_at, request_id, body_sha256, "
                        "body_size, archive_key, status, attempts) "
                        "VALUES ('d', now(), 'r', 'x', 1, 'a', 'processed', 1)"
                    )
                )
                for n in range(5):
                    connection.execute(text(_EMAIL), {"key": f"old-{n}", "subject": "old"})
                connection.execute(
                    text(
                        "INSERT INTO users (name, password_hash, is_admin) "
                        "VALUES ('boss', 'h', true), ('ops', 'h', false)"
                    )
                )
            _upgrade(url, "head")
            with engine.begin() as connection:
                connection.execute(text(_EMAIL), {"key": "new", "subject": "new"})
                found = connection.execute(
                    text(
                        "SELECT subject FROM emails "
                        "WHERE search_document @@ to_tsquery('simple', 'quarterly')"
                    )
                ).scalars()
                roles = dict(connection.execute(text("SELECT name, role FROM users")).all())
        finally:
            engine.dispose()
    assert sorted(found) == ["new"] + ["old"] * 5
    assert roles == {"boss": "admin", "ops": "operator"}
