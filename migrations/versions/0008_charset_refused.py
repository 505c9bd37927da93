"""emails.charset_refused: a text part or header declared a charset that is not a mail charset

Revision ID: 0008_charset_refused
Revises: 0007_erasure_without_grace
Create Date: 2026-12-07 04:40:00.000000

The worker decodes text only with real mail charsets (worker/charsets.py); a part that
declares another (punycode, utf-7, the *_escape codecs...) is read as UTF-8 with
replacement, and this column says so, so that a reader of the row knows its text is not
what the sender's charset would have given. A constant default adds the column without
rewriting the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_charset_refused"
down_revision: str | None = "0007_erasure_without_grace"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "emails",
        sa.Column("charset_refused", sa.Boolean(), server_default="false", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("emails", "charset_refused")
