"""retention, erasure and audit: removal markers, pending object deletions, erasure
records, audit runs, and admin users

Revision ID: 0004_retention
Revises: 0003
Create Date: 2026-12-01 10:55:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004_retention'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('deliveries', sa.Column('archive_removed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('deliveries', sa.Column('archive_removed_reason', sa.String(length=16), nullable=True))
    op.add_column('emails', sa.Column('raw_removed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('attachments', sa.Column('content_removed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('users', sa.Column('is_admin', sa.Boolean(), server_default='false', nullable=False))
    op.create_table('object_deletions',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_object_deletions'))
    )
    op.create_table('erasures',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('selector_kind', sa.String(length=16), nullable=False),
    sa.Column('selector_sha256', sa.String(length=64), nullable=False),
    sa.Column('counts', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('objects_done_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures'))
    )
    op.create_index(op.f('ix_erasures_selector_sha256'), 'erasures', ['selector_sha256'], unique=False)
    op.create_table('audit_runs',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('counts', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('repaired', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_runs'))
    )
    op.create_index(op.f('ix_audit_runs_finished_at'), 'audit_runs', ['finished_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_audit_runs_finished_at'), table_name='audit_runs')
    op.drop_table('audit_runs')
    op.drop_index(op.f('ix_erasures_selector_sha256'), table_name='erasures')
    op.drop_table('erasures')
    op.drop_table('object_deletions')
    op.drop_column('users', 'is_admin')
    op.drop_column('attachments', 'content_removed_at')
    op.drop_column('emails', 'raw_removed_at')
    op.drop_column('deliveries', 'archive_removed_reason')
    op.drop_column('deliveries', 'archive_removed_at')
