"""object_deletions.object_deleted_at: a drained key stays as a tombstone for a while

Revision ID: 0006_tombstones
Revises: 0005_handoff
Create Date: 2026-12-01 12:30:00.000000

A worker that uploaded an object just before a drain removed it learns so when it
commits the rows naming the key (shared/lifecycle/objects.py), and puts the object back.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_tombstones'
down_revision: str | None = '0005_handoff'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'object_deletions',
        sa.Column('object_deleted_at', sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column('object_deletions', 'object_deleted_at')
