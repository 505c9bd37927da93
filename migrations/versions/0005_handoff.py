"""hand-off: derived fields of emails and attachments, the dispatch outbox (issue 10)

Revision ID: 0005_handoff
Revises: 0004_retention
Create Date: 2026-12-01 10:45:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision: str = '0005_handoff'
down_revision: str | None = '0004_retention'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable or server-defaulted: existing rows stay valid, and `kave reprocess` fills them.
    op.add_column('emails', sa.Column('conversation_id', sa.Text(), nullable=True))
    op.add_column('emails', sa.Column('mailbox_hash', sa.Text(), nullable=True))
    op.add_column('emails', sa.Column('reply_text', sa.Text(), nullable=True))
    op.add_column('emails', sa.Column('auto_submitted', sa.Boolean(), server_default='false', nullable=False))
    op.add_column('emails', sa.Column('auto_submitted_reason', sa.String(length=64), nullable=True))
    op.add_column('emails', sa.Column('bounced_addresses', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False))
    op.create_index(op.f('ix_emails_conversation_id'), 'emails', ['conversation_id'], unique=False)
    op.create_index(op.f('ix_emails_mailbox_hash'), 'emails', ['mailbox_hash'], unique=False)
    op.add_column('attachments', sa.Column('sniffed_type', sa.String(length=255), nullable=True))
    op.add_column('attachments', sa.Column('type_mismatch', sa.Boolean(), server_default='false', nullable=False))
    op.create_table('dispatches',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('email_id', sa.BigInteger(), nullable=False),
    sa.Column('route', sa.String(length=64), nullable=True),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['email_id'], ['emails.id'], name=op.f('fk_dispatches_email_id_emails'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatches')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_dispatches_idempotency_key'))
    )
    op.create_index(op.f('ix_dispatches_email_id'), 'dispatches', ['email_id'], unique=False)
    op.create_index(op.f('ix_dispatches_route'), 'dispatches', ['route'], unique=False)
    op.create_index('ix_dispatches_due', 'dispatches', ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_table('dispatches')
    op.drop_column('attachments', 'type_mismatch')
    op.drop_column('attachments', 'sniffed_type')
    op.drop_index(op.f('ix_emails_mailbox_hash'), table_name='emails')
    op.drop_index(op.f('ix_emails_conversation_id'), table_name='emails')
    op.drop_column('emails', 'bounced_addresses')
    op.drop_column('emails', 'auto_submitted_reason')
    op.drop_column('emails', 'auto_submitted')
    op.drop_column('emails', 'reply_text')
    op.drop_column('emails', 'mailbox_hash')
    op.drop_column('emails', 'conversation_id')
