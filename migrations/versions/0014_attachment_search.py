"""full-text search over attachment text

Revision ID: 0014_attachment_search
Revises: 0013_agent_surface
Create Date: 2026-12-07 20:00:00.000000

* ``attachment_texts``: one row per content (sha256) whose text is ready, holding the
  first ``INDEXED_CHARACTERS`` characters of its text (worker/text/indexing.py: bounded so
  that no tsvector nears its 1 MB limit; kept for snippets) and their tsvector (``simple`` configuration: one content is shared by emails of any language),
  with a GIN index. The text worker writes it when a conversion ends ``ready``
  (worker/text/service.py); the row goes when the text object goes (the drain in
  shared/lifecycle/objects.py, which erasure and retention both end in). Keyed by
  content, as the text object is: an attachment sent to a thousand mailboxes is indexed
  once. Searches reach emails through ``attachments.sha256``: a partial index on it over
  the rows whose text is ready (0012 dropped the plain one, which nothing used then).
* Texts that were ready before this revision have no row yet: the text sweep indexes
  them from their objects, a bounded number per run (worker/text/indexing.py).

The new table is empty, so its index is built with it; the index on ``attachments``
(a large table, written by ingest) is built CONCURRENTLY, outside the transaction.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014_attachment_search"
down_revision: str | None = "0013_agent_surface"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SHA_INDEX = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_attachments_text_ready ON attachments "
    "(sha256, email_id) WHERE text_status = 'ready' AND content_removed_at IS NULL"
)


def _drop_if_invalid(name: str) -> None:
    # A failed concurrent build leaves an INVALID index that IF NOT EXISTS would keep.
    invalid = op.get_bind().execute(
        sa.text(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND NOT i.indisvalid"
        ),
        {"name": name},
    ).first()
    if invalid is not None:
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def upgrade() -> None:
    op.create_table(
        "attachment_texts",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("search_document", postgresql.TSVECTOR(), nullable=False),
        sa.Column(
            "indexed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_attachment_texts")),
    )
    op.create_index(
        "ix_attachment_texts_search",
        "attachment_texts",
        ["search_document"],
        postgresql_using="gin",
    )
    with op.get_context().autocommit_block():
        _drop_if_invalid("ix_attachments_text_ready")
        op.execute(_SHA_INDEX)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_attachments_text_ready")
    op.drop_index("ix_attachment_texts_search", table_name="attachment_texts")
    op.drop_table("attachment_texts")
