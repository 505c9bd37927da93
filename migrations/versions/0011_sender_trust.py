"""Sender trust, content hygiene and malware scan columns

Revision ID: 0011_sender_trust
Revises: 0010_attachment_text
Create Date: 2026-12-07 17:00:00.000000

``emails.sender_trust`` (pass, fail, none, unknown) with its evidence in
``sender_trust_reasons`` (worker/ingest/trust/), ``emails.hygiene_flags``
(worker/ingest/derive/hygiene.py), and per attachment the malware scan's
``scan_status`` and ``scan_signature`` (worker/ingest/scan.py). Nullable columns and a
constant default add them without rewriting the tables; rows stored before keep a NULL
verdict (not checked) until ``kave reprocess`` computes it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_sender_trust"
down_revision: str | None = "0010_attachment_text"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("emails", sa.Column("sender_trust", sa.String(length=8), nullable=True))
    op.add_column(
        "emails",
        sa.Column("sender_trust_reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "emails",
        sa.Column(
            "hygiene_flags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("attachments", sa.Column("scan_status", sa.String(length=16), nullable=True))
    op.add_column("attachments", sa.Column("scan_signature", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("attachments", "scan_signature")
    op.drop_column("attachments", "scan_status")
    op.drop_column("emails", "hygiene_flags")
    op.drop_column("emails", "sender_trust_reasons")
    op.drop_column("emails", "sender_trust")
