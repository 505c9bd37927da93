"""emails.bulk and emails.forwarded_text: list mail apart from machine mail, and forwards

Revision ID: 0009_bulk_forwarded
Revises: 0008_charset_refused
Create Date: 2026-12-07 10:00:00.000000

``auto_submitted`` used to count ``Precedence: bulk|list|junk`` too, so a person's reply
through a mailing list looked machine-written; ``bulk`` now says "came through a list or
a bulk sender" on its own (worker/ingest/derive/loop_guard.py). ``forwarded_text`` stores
the forwarded message the reply extraction already cut from a forward. A constant
default and a nullable column add them without rewriting the table; ``kave reprocess``
fills them for rows stored before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_bulk_forwarded"
down_revision: str | None = "0008_charset_refused"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "emails", sa.Column("bulk", sa.Boolean(), server_default="false", nullable=False)
    )
    op.add_column("emails", sa.Column("forwarded_text", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("emails", "forwarded_text")
    op.drop_column("emails", "bulk")
