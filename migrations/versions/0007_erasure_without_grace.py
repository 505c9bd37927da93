"""object_deletions.without_grace: an erasure's objects go at once, whatever their age

Revision ID: 0007_erasure_without_grace
Revises: 0006_tombstones
Create Date: 2026-12-07 04:00:00.000000

An erasure queues the objects of the rows it deleted with this flag, so every drain (the
erasure's own, or the next kave erase, kave purge or kave audit --repair after a crash)
removes them without waiting for KAVE_ORPHAN_GRACE_SECONDS (shared/lifecycle/objects.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_erasure_without_grace'
down_revision: str | None = '0006_tombstones'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'object_deletions',
        sa.Column('without_grace', sa.Boolean(), server_default='false', nullable=False),
    )


def downgrade() -> None:
    op.drop_column('object_deletions', 'without_grace')
