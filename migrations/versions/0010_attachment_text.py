"""attachments.text_*: the text of each attachment for agents (issue 32)

Revision ID: 0010_attachment_text
Revises: 0009_bulk_forwarded
Create Date: 2026-12-07 17:00:00.000000

Nullable columns without defaults add no table rewrite: rows stored before keep NULL
("not converted"), and ``kave reprocess --text`` queues them. ``dispatches.status`` gains
the value ``held`` (a route with ``after: text``), a String column needing no change. The
partial index of pending rows is built CONCURRENTLY: attachments is a big table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_attachment_text"
down_revision: str | None = "0009_bulk_forwarded"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attachments", sa.Column("text_status", sa.String(64), nullable=True))
    op.add_column("attachments", sa.Column("text_characters", sa.Integer(), nullable=True))
    op.add_column("attachments", sa.Column("text_pages", sa.Integer(), nullable=True))
    op.add_column("attachments", sa.Column("text_extractor", sa.String(64), nullable=True))
    op.add_column("attachments", sa.Column("text_version", sa.Integer(), nullable=True))
    op.add_column("attachments", sa.Column("text_excerpt", sa.Text(), nullable=True))
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_attachments_text_pending",
            "attachments",
            ["sha256"],
            postgresql_where=sa.text("text_status = 'pending'"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_attachments_text_pending",
            table_name="attachments",
            postgresql_concurrently=True,
            if_exists=True,
        )
    for name in (
        "text_excerpt",
        "text_version",
        "text_extractor",
        "text_pages",
        "text_characters",
        "text_status",
    ):
        op.drop_column("attachments", name)
