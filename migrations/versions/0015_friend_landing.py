"""friend landing: the link that handed each pool code out, landing caps on programs, recorded blocks

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('friend_codes_per_link_per_day', sa.Integer(), server_default='20', nullable=False))
        batch_op.add_column(sa.Column('friend_codes_per_address_per_hour', sa.Integer(), server_default='5', nullable=False))

    with op.batch_alter_table('pool_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('link_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_pool_codes_link_id_referral_links'), 'referral_links', ['link_id'], ['id'], ondelete='SET NULL')
        batch_op.create_index('ix_pool_codes_link', ['link_id', 'handed_out_at'], unique=False, postgresql_where=sa.text('link_id IS NOT NULL'), sqlite_where=sa.text('link_id IS NOT NULL'))

    op.create_table('referral_blocks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('link_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("reason IN ('link_daily_cap', 'address_hourly_cap')", name=op.f('ck_referral_blocks_reason')),
    sa.ForeignKeyConstraint(['link_id'], ['referral_links.id'], name=op.f('fk_referral_blocks_link_id_referral_links'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_referral_blocks_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_blocks'))
    )
    with op.batch_alter_table('referral_blocks', schema=None) as batch_op:
        batch_op.create_index('ix_referral_blocks_shop', ['shop_id', 'id'], unique=False)
        batch_op.create_index('ix_referral_blocks_link', ['link_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('referral_blocks', schema=None) as batch_op:
        batch_op.drop_index('ix_referral_blocks_link')
        batch_op.drop_index('ix_referral_blocks_shop')
    op.drop_table('referral_blocks')

    with op.batch_alter_table('pool_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_pool_codes_link', postgresql_where=sa.text('link_id IS NOT NULL'), sqlite_where=sa.text('link_id IS NOT NULL'))
        batch_op.drop_constraint(batch_op.f('fk_pool_codes_link_id_referral_links'), type_='foreignkey')
        batch_op.drop_column('link_id')

    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_column('friend_codes_per_address_per_hour')
        batch_op.drop_column('friend_codes_per_link_per_day')
