"""Migration 0014 on a database that already holds mail: the search documents are kept
in the rows from then on (STORAGE MAIN), the old rows rewritten with their documents
unchanged, and the table searchable throughout."""

from __future__ import annotations

import random

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from shared.db import normalise_database_url
from shared.migrate import MIGRATIONS_DIR
from tests.services import fresh_database

_EMAIL = (
    "INSERT INTO emails (dedup_key, raw_sha256, raw_size, raw_key, delivery_id, subject, "
    'text_body, headers, "to", cc, bcc, reply_to, "references", tags, spam_rules) '
    "VALUES (:key, :key, 1, 'k', 'd', 'statement', :body, '[]', '[]', '[]', "
    "'[]', '[]', '[]', '[]', '[]')"
)
_DOCUMENTS = "SELECT search_document::text FROM emails ORDER BY id"
_FOUND = "SELECT dedup_key FROM emails WHERE search_document @@ to_tsquery('simple', :word)"


def _upgrade(url: str, revision: str) -> None:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)


def _body(seed: int) -> str:
    # Distinct words: a document of kilobytes, which 0013 stores out of line.
    rng = random.Random(seed)
    return " ".join(f"w{rng.randrange(10**9)}" for _ in range(120))


def test_documents_move_into_their_rows_unchanged(postgres_admin_url: str) -> None:
    with fresh_database(postgres_admin_url) as url:
        _upgrade(url, "0013_agent_surface")
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
                for n in range(3):
                    connection.execute(text(_EMAIL), {"key": f"old-{n}", "body": _body(n)})
                before = connection.execute(text(_DOCUMENTS)).scalars().all()
            _upgrade(url, "head")
            with engine.begin() as connection:
                after = connection.execute(text(_DOCUMENTS)).scalars().all()
                connection.execute(text(_EMAIL), {"key": "new", "body": _body(9) + " shared"})
                found = connection.execute(text(_FOUND), {"word": "statement"}).scalars().all()
                storage = connection.execute(
                    text(
                        "SELECT attstorage FROM pg_attribute "
                        "WHERE attrelid = 'emails'::regclass AND attname = 'search_document'"
                    )
                ).scalar_one()
        finally:
            engine.dispose()
    assert storage == "m"
    assert len(before) == 3
    assert after == before
    assert sorted(found) == ["new", "old-0", "old-1", "old-2"]
