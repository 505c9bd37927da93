"""Indexes for every list filter, the recipient-address array, per-domain activity

Revision ID: 0012_list_indexes
Revises: 0011_sender_trust
Create Date: 2026-12-07 17:00:00.000000

Safe on a large, live table (README "Migrations on a large database"):

- the new column is nullable without a default (a catalogue change, no rewrite), added
  with a short ``lock_timeout`` so it never queues ingest behind a long transaction;
- ``emails.recipient_addresses`` is backfilled in batches of ``BACKFILL_BATCH`` ids, each
  its own short transaction (row locks on that batch only); rows ingest writes meanwhile
  arrive filled by the worker;
- ``domain_activity`` is filled from the emails in one read (no lock that blocks writes);
- every index is built or dropped ``CONCURRENTLY`` (outside a transaction, in
  ``autocommit_block``): writes go on during the build. A build that was interrupted
  leaves an invalid index, which the next run drops and builds again.

Why each index, and which ones went (the queries in api/ and shared/ that use them are
named in shared/models/ next to each index).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012_list_indexes"
down_revision: str | None = "0011_sender_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_BATCH = 5000

# name -> (table, definition after the table name)
NEW_INDEXES = {
    "ix_emails_sender": ("emails", "(lower(from_address), received_at, id)"),
    "ix_emails_recipient_addresses": ("emails", "USING gin (recipient_addresses)"),
    "ix_emails_subject_trgm": ("emails", "USING gin (subject gin_trgm_ops)"),
    "ix_emails_spf": ("emails", "(lower((spf_result)::text), received_at, id)"),
    "ix_emails_spam_score": ("emails", "(spam_score)"),
    "ix_deliveries_received": ("deliveries", "(received_at, id)"),
    "ix_deliveries_status_received": ("deliveries", "(status, received_at, id)"),
    "ix_dead_letters_first_seen": ("dead_letters", "(first_seen_at, id)"),
    "ix_dead_letters_status_first_seen": ("dead_letters", "(status, first_seen_at, id)"),
    "ix_events_created": ("events", "(created_at, id)"),
    "ix_events_recipient_lower": ("events", "(lower(recipient), created_at, id)"),
    # Which rows still name an object (shared/lifecycle/objects.py: every drained key of
    # kave purge, erase and audit --repair asks it; without these, three full scans).
    "ix_emails_raw_key": ("emails", "(raw_key)"),
    "ix_attachments_object_key": ("attachments", "(object_key)"),
    "ix_deliveries_archive_key": ("deliveries", "(archive_key)"),
}
# Indexes no query uses any more (each replaced by one above), and how to rebuild them.
OLD_INDEXES = {
    "ix_emails_from_address": ("emails", "(from_address)"),
    "ix_emails_envelope_recipient": ("emails", "(envelope_recipient)"),
    "ix_deliveries_status": ("deliveries", "(status)"),
    "ix_dead_letters_status": ("dead_letters", "(status)"),
    "ix_dead_letters_last_seen_at": ("dead_letters", "(last_seen_at)"),
    "ix_events_recipient": ("events", "(recipient)"),
    # Nothing looks these up: the keys named after them (archive_key, object_key) are.
    "ix_deliveries_body_sha256": ("deliveries", "(body_sha256)"),
    "ix_attachments_sha256": ("attachments", "(sha256)"),
}

# The envelope recipient and every To and Cc address, lower-cased, each once, in code
# point order (COLLATE "C"): what worker.ingest.rows.recipient_addresses computes.
_BACKFILL = sa.text(
    """
    UPDATE emails SET recipient_addresses = ARRAY(
        SELECT DISTINCT lower(left(address, 512)) COLLATE "C"
        FROM (
            SELECT envelope_recipient AS address
            UNION ALL SELECT item ->> 'address' FROM jsonb_array_elements("to") AS item
            UNION ALL SELECT item ->> 'address' FROM jsonb_array_elements(cc) AS item
        ) AS found
        WHERE address <> ''
        ORDER BY 1
    )
    WHERE id >= :low AND id < :high AND recipient_addresses IS NULL
    """
)
_DOMAIN_ACTIVITY = sa.text(
    """
    INSERT INTO domain_activity (day, domain, emails, last_received_at)
    SELECT (received_at AT TIME ZONE 'UTC')::date, lower(split_part(envelope_recipient, '@', 2)),
           count(*), max(received_at)
    FROM emails
    WHERE envelope_recipient LIKE '%@%'
    GROUP BY 1, 2
    ON CONFLICT (day, domain) DO UPDATE SET
        emails = domain_activity.emails + excluded.emails,
        last_received_at = greatest(domain_activity.last_received_at, excluded.last_received_at)
    """
)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # Waits at most this long for the table's lock, instead of queueing every writer
    # behind a long transaction; on a timeout, run `kave migrate` again.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "emails", sa.Column("recipient_addresses", postgresql.ARRAY(sa.Text()), nullable=True)
    )
    op.create_table(
        "domain_activity",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("emails", sa.BigInteger(), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "domain", name=op.f("pk_domain_activity")),
    )
    with op.get_context().autocommit_block():
        # Fewer indexes to keep up while the backfill rewrites rows.
        for name in OLD_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        _backfill_recipients()
        op.execute(_DOMAIN_ACTIVITY)
        for name, (table, definition) in NEW_INDEXES.items():
            _create_concurrently(name, table, definition)


def _backfill_recipients() -> None:
    """Every row there is, then those written meanwhile (by workers of the release
    before, which do not fill the column), until a round finds less than a batch new."""
    bind = op.get_bind()
    low = 1
    while True:
        top = bind.execute(sa.text("SELECT coalesce(max(id), 0) FROM emails")).scalar_one()
        for start in range(low, top + 1, BACKFILL_BATCH):
            bind.execute(_BACKFILL, {"low": start, "high": start + BACKFILL_BATCH})
        if top - low < BACKFILL_BATCH:
            return
        low = top + 1


def _create_concurrently(name: str, table: str, definition: str) -> None:
    # An interrupted concurrent build leaves the index behind, invalid: build it again.
    invalid = op.get_bind().execute(
        sa.text(
            "SELECT 1 FROM pg_index JOIN pg_class ON pg_class.oid = pg_index.indexrelid "
            "WHERE pg_class.relname = :name AND NOT pg_index.indisvalid"
        ),
        {"name": name},
    )
    if invalid.first() is not None:
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {definition}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in NEW_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        for name, (table, definition) in OLD_INDEXES.items():
            _create_concurrently(name, table, definition)
    op.drop_table("domain_activity")
    op.drop_column("emails", "recipient_addresses")
