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
* ``emails.search_document`` is kept in the row (``STORAGE MAIN``) instead of out of line
  in the TOAST table. A search whose words are common reads the documents newest first
  until a page matches; an out-of-line document costs a TOAST index lookup and another
  heap page per row, and made such searches 3-5 times slower at 100,000 emails
  (BENCHMARKS.md). Only new values follow the new storage: the rows before are
  rewritten in batches of ``REWRITE_BATCH`` ids, each its own short transaction (the
  document is unchanged; the email's text columns, which move out of line first, are
  not rewritten).
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

REWRITE_BATCH = 5000
# A new value of the same document: an unchanged TOAST pointer would be kept as it is.
_REWRITE = sa.text(
    "UPDATE emails SET search_document = search_document || ''::tsvector "
    "WHERE id > :after AND id <= :until AND search_document IS NOT NULL"
)

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
    op.execute("ALTER TABLE emails ALTER COLUMN search_document SET STORAGE MAIN")
    with op.get_context().autocommit_block():
        _drop_if_invalid("ix_attachments_text_ready")
        op.execute(_SHA_INDEX)
        last = op.get_bind().execute(sa.text("SELECT max(id) FROM emails")).scalar() or 0
        for after in range(0, last, REWRITE_BATCH):
            op.get_bind().execute(_REWRITE, {"after": after, "until": after + REWRITE_BATCH})


def downgrade() -> None:
    # Rows keep their documents in line; new values go out of line again.
    op.execute("ALTER TABLE emails ALTER COLUMN search_document SET STORAGE EXTENDED")
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_attachments_text_ready")
    op.drop_index("ix_attachment_texts_search", table_name="attachment_texts")
    op.drop_table("attachment_texts")
