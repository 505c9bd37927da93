"""Migration 0015 on a database that already holds converted attachments: the new column
is there and NULL for them (their text predates the feed), its index is valid, and the
downgrade takes both away again."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from shared.db import normalise_database_url
from shared.migrate import MIGRATIONS_DIR
from tests.services import fresh_database

_INDEX_VALID = (
    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE c.relname = 'ix_attachments_text_position'"
)


def _config(url: str) -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


def test_text_position_is_added_null_indexed_and_removed(postgres_admin_url: str) -> None:
    with fresh_database(postgres_admin_url) as url:
        command.upgrade(_config(url), "0013_agent_surface")
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
                email_id = connection.execute(
                    text(
                        "INSERT INTO emails (dedup_key, raw_sha256, raw_size, raw_key, "
                        'delivery_id, headers, "to", cc, bcc, reply_to, "references", tags, '
                        "spam_rules) VALUES ('k', 'k', 1, 'k', 'd', '[]', '[]', '[]', '[]', "
                        "'[]', '[]', '[]', '[]') RETURNING id"
                    )
                ).scalar_one()
                connection.execute(
                    text(
                        "INSERT INTO attachments (email_id, position, filename, content_type, "
                        "size, sha256, object_key, inline, text_status) "
                        "VALUES (:e, 0, 'a.pdf', 'application/pdf', 1, 's', 'o', false, "
                        "'ready')"
                    ),
                    {"e": email_id},
                )
            command.upgrade(_config(url), "0015_text_ready_feed")
            with engine.begin() as connection:
                positions = connection.execute(
                    text("SELECT text_position FROM attachments")
                ).scalars()
                assert list(positions) == [None]
                assert connection.execute(text(_INDEX_VALID)).scalar_one() is True
            command.downgrade(_config(url), "0013_agent_surface")
            with engine.begin() as connection:
                columns = connection.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = 'attachments' AND column_name = 'text_position'"
                    )
                ).all()
                assert columns == []
                assert connection.execute(text(_INDEX_VALID)).first() is None
        finally:
            engine.dispose()
