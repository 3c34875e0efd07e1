"""issued_codes: removed from the store (clean-up of expired and revoked codes) and taken off the customer

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ON_STORE = "discount_gid IS NOT NULL AND removed_from_store_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detached_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('store_removal_job', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('removed_from_store_at', app.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.create_index('ix_issued_codes_shop_on_store', ['shop_id', 'status'], unique=False,
                              postgresql_where=sa.text(ON_STORE), sqlite_where=sa.text(ON_STORE))


def downgrade() -> None:
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_issued_codes_shop_on_store')
        batch_op.drop_column('removed_from_store_at')
        batch_op.drop_column('store_removal_job')
        batch_op.drop_column('detached_at')
