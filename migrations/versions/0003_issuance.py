"""issuance: terms snapshot, create attempts, claims, attach/revoke timestamps, redirect path

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('redirect_path', sa.String(length=255), nullable=True))

    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('terms', sa.JSON(), server_default='{}', nullable=False))
        batch_op.add_column(sa.Column('create_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('claim_expires_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('attached_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deactivated_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_issued_codes_shop_status', ['shop_id', 'status', 'id'], unique=False)
    # The default only fills existing rows; new rows always carry their terms.
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.alter_column('terms', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_issued_codes_shop_status')
        batch_op.drop_column('deactivated_at')
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('attached_at')
        batch_op.drop_column('claim_expires_at')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('create_attempts')
        batch_op.drop_column('terms')

    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_column('redirect_path')
