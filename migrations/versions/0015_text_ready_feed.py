"""the live feed's ``email.text_ready``: which transaction made each attachment's text final

Revision ID: 0015_text_ready_feed
Revises: 0014_attachment_search
Create Date: 2026-12-07 20:00:00.000000

* ``attachments.text_position``: the id of the transaction that gave the row its final
  text status (worker/text/service.py sets it in the UPDATE that writes the status).
  The live feed (api/stream/feed.py) sends an email's ``email.text_ready`` at the
  largest of its attachments' positions, once none is pending and every transaction
  below it has ended: the same rule as ``email.received``, so a resume misses nothing
  and repeats nothing, and two conversions of one email's attachments need no lock
  between them. Nullable, no default: a catalogue change, no rewrite; rows converted
  before keep NULL (their text predates the feed).
* ``ix_attachments_text_position`` over the rows that have one, built CONCURRENTLY
  (writes go on during the build; an interrupted build is dropped and built again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_text_ready_feed"
down_revision: str | None = "0014_attachment_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_attachments_text_position ON attachments "
    "(text_position) WHERE text_position IS NOT NULL"
)


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")  # never queue ingest behind a long transaction
    op.add_column("attachments", sa.Column("text_position", sa.BigInteger(), nullable=True))
    with op.get_context().autocommit_block():
        invalid = (
            op.get_bind()
            .execute(
                sa.text(
                    "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE c.relname = 'ix_attachments_text_position' AND NOT i.indisvalid"
                )
            )
            .first()
        )
        if invalid is not None:
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_attachments_text_position")
        op.execute(_INDEX)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_attachments_text_position")
    op.drop_column("attachments", "text_position")
