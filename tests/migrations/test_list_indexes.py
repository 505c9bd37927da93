"""Migration 0012 on a database with mail in it: the recipient column is backfilled as
the worker fills it, the per-domain counts are filled, every index is built (each
statement CONCURRENTLY, outside a transaction, which PostgreSQL refuses otherwise), and
the API's filters find the old mail through the new indexes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session

from api.emails.queries import EmailFilters, list_emails
from shared.db import normalise_database_url
from shared.migrate import MIGRATIONS_DIR
from tests.services import fresh_database
from worker.ingest.rows import lowered_addresses

REVISION = "0012_list_indexes"
NEW_INDEXES = {
    "ix_emails_sender",
    "ix_emails_recipient_addresses",
    "ix_emails_subject_trgm",
    "ix_emails_spf",
    "ix_emails_spam_score",
    "ix_deliveries_received",
    "ix_deliveries_status_received",
    "ix_dead_letters_first_seen",
    "ix_dead_letters_status_first_seen",
    "ix_events_created",
    "ix_events_recipient_lower",
    "ix_emails_raw_key",
    "ix_attachments_object_key",
    "ix_deliveries_archive_key",
}
DROPPED = {
    "ix_emails_from_address",
    "ix_emails_envelope_recipient",
    "ix_deliveries_status",
    "ix_dead_letters_status",
    "ix_dead_letters_last_seen_at",
    "ix_events_recipient",
    "ix_deliveries_body_sha256",
    "ix_attachments_sha256",
}

# (envelope recipient, From, To, Cc, subject), stored before the migration.
MAIL = [
    ("Inbox@Example.com", "Ana@Example.org", ["Carol@Example.com"], ["dave@example.com"], "A"),
    ("inbox@example.com", "bob@example.net", ["inbox@example.com"], [], "Invoice 100% paid"),
    ("other@example.org", "ana@example.org", [], ["Carol@example.com"], "re: REF-77"),
    (None, None, [], [], None),
]


def _upgrade(url: str, revision: str) -> None:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)


def _previous() -> str:
    from alembic.script import ScriptDirectory

    down = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(REVISION).down_revision
    assert isinstance(down, str)
    return down


@pytest.fixture(scope="module")
def migrated(postgres_admin_url: str) -> Iterator[tuple[Engine, list[str]]]:
    """A database with MAIL stored at the revision before 0012, then migrated (to 0012,
    then to the head); the index statements 0012 ran."""
    with fresh_database(postgres_admin_url) as url:
        _upgrade(url, _previous())
        engine = create_engine(normalise_database_url(url))
        with engine.begin() as connection:
            _store(connection)
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "INDEX" in statement.upper():
                statements.append(" ".join(statement.split()))

        # Every engine's statements: the migration builds its own (migrations/env.py).
        event.listen(Engine, "before_cursor_execute", record)
        try:
            _upgrade(url, REVISION)
        finally:
            event.remove(Engine, "before_cursor_execute", record)
        # The later revisions too: the filters read through today's models.
        _upgrade(url, "head")
        try:
            yield engine, statements
        finally:
            engine.dispose()


def _store(connection: Any) -> None:
    connection.execute(
        text(
            "INSERT INTO deliveries (id, received_at, request_id, body_sha256, body_size, "
            "archive_key, status, attempts) "
            "VALUES ('d1', now(), 'r', 'x', 1, 'deliveries/x', 'processed', 1)"
        )
    )
    for number, (envelope, sender, to, cc, subject) in enumerate(MAIL):
        connection.execute(
            text(
                'INSERT INTO emails (dedup_key, raw_sha256, raw_size, raw_key, "to", cc, '
                'bcc, reply_to, "references", headers, tags, spam_rules, envelope_recipient, '
                "from_address, subject, delivery_id, received_at) VALUES (:key, 'x', 1, "
                "'messages/x', :to, :cc, '[]', '[]', '[]', '[]', '[]', '[]', :envelope, "
                ":sender, :subject, 'd1', now() - make_interval(mins => :age))"
            ),
            {
                "key": f"k{number}",
                "to": json.dumps([{"name": None, "address": a} for a in to]),
                "cc": json.dumps([{"name": "N", "address": a} for a in cc]),
                "envelope": envelope,
                "sender": sender,
                "subject": subject,
                "age": number,
            },
        )


def test_every_index_is_built_concurrently_and_the_unused_ones_are_gone(
    migrated: tuple[Engine, list[str]],
) -> None:
    engine, statements = migrated
    builds = [s for s in statements if s.upper().startswith(("CREATE INDEX", "DROP INDEX"))]
    assert builds
    assert all("CONCURRENTLY" in s for s in builds), builds
    with engine.connect() as connection:
        query = (
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = indexrelid"
        )
        indexes: dict[str, bool] = {
            row.relname: row.indisvalid for row in connection.execute(text(query))
        }
    assert {name: indexes.get(name) for name in NEW_INDEXES} == dict.fromkeys(NEW_INDEXES, True)
    assert DROPPED.isdisjoint(indexes)


def test_rows_stored_before_are_backfilled_as_the_worker_writes_them(
    migrated: tuple[Engine, list[str]],
) -> None:
    engine, _ = migrated
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT recipient_addresses FROM emails ORDER BY dedup_key")
        ).scalars()
        activity = connection.execute(
            text("SELECT domain, emails FROM domain_activity ORDER BY domain")
        ).all()
    assert list(stored) == [lowered_addresses([e, *to, *cc]) for e, _, to, cc, _ in MAIL]
    assert [tuple(row) for row in activity] == [("example.com", 2), ("example.org", 1)]


@pytest.mark.parametrize(
    ("filters", "subjects"),
    [
        (EmailFilters(sender="ANA@example.org"), ["A", "re: REF-77"]),
        (EmailFilters(sender="nobody@example.org"), []),
        (EmailFilters(recipient="carol@EXAMPLE.com"), ["A", "re: REF-77"]),  # To, Cc
        (EmailFilters(recipient="inbox@example.com"), ["A", "Invoice 100% paid"]),
        (EmailFilters(recipient="example.com"), []),  # whole addresses only
        (EmailFilters(subject="ref-7"), ["re: REF-77"]),
        (EmailFilters(subject="100%"), ["Invoice 100% paid"]),  # % is text
        (EmailFilters(subject="_"), []),
    ],
)
def test_the_filters_find_mail_stored_before_the_migration(
    migrated: tuple[Engine, list[str]], filters: EmailFilters, subjects: list[str]
) -> None:
    engine, _ = migrated
    with Session(engine) as session:
        page, _counts = list_emails(session, filters, cursor=None, limit=10)
    # Newest first: the mail was stored oldest last.
    assert [email.subject for email in page.rows] == subjects
