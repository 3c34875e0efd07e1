"""referrals: held and rewarded referred orders, redeemed friend codes, reward settings, click hours

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 15:28:18.637010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('referral_click_hours',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('link_id', sa.Integer(), nullable=False),
    sa.Column('hour', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('clicks', sa.Integer(), nullable=False),
    sa.Column('visitors', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['link_id'], ['referral_links.id'], name=op.f('fk_referral_click_hours_link_id_referral_links'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_referral_click_hours_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_click_hours')),
    sa.UniqueConstraint('link_id', 'hour', name=op.f('uq_referral_click_hours_link_id_hour'))
    )
    with op.batch_alter_table('referral_click_hours', schema=None) as batch_op:
        batch_op.create_index('ix_referral_click_hours_shop', ['shop_id', 'hour'], unique=False)

    op.create_table('referrals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=True),
    sa.Column('link_id', sa.Integer(), nullable=True),
    sa.Column('advocate_id', sa.Integer(), nullable=True),
    sa.Column('pool_code_id', sa.Integer(), nullable=True),
    sa.Column('friend_code', sa.String(length=64), nullable=False),
    sa.Column('friend_customer_id', sa.BigInteger(), nullable=True),
    sa.Column('shopify_order_id', sa.BigInteger(), nullable=False),
    sa.Column('order_name', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('order_total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('discount_amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('ordered_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('hold_until', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reward_code_id', sa.Integer(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(status IN ('voided', 'blocked')) = (reason IS NOT NULL)", name=op.f('ck_referrals_status_reason')),
    sa.CheckConstraint("reason IS NULL OR reason IN ('self_referral', 'same_email', 'not_first_order', 'advocate_monthly_cap', 'no_advocate', 'order_cancelled', 'order_refunded', 'reward_program_off', 'advocate_erased')", name=op.f('ck_referrals_reason')),
    sa.CheckConstraint("status IN ('held', 'rewarded', 'voided', 'blocked')", name=op.f('ck_referrals_status')),
    sa.ForeignKeyConstraint(['advocate_id'], ['customers.id'], name=op.f('fk_referrals_advocate_id_customers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['link_id'], ['referral_links.id'], name=op.f('fk_referrals_link_id_referral_links'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pool_code_id'], ['pool_codes.id'], name=op.f('fk_referrals_pool_code_id_pool_codes'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_referrals_program_id_programs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['reward_code_id'], ['issued_codes.id'], name=op.f('fk_referrals_reward_code_id_issued_codes'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_referrals_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referrals')),
    sa.UniqueConstraint('shop_id', 'shopify_order_id', name=op.f('uq_referrals_shop_id_shopify_order_id'))
    )
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.create_index('ix_referrals_advocate', ['shop_id', 'advocate_id', 'created_at'], unique=False)
        batch_op.create_index('ix_referrals_held', ['shop_id', 'hold_until'], unique=False, postgresql_where=sa.text("status = 'held'"), sqlite_where=sa.text("status = 'held'"))
        batch_op.create_index('ix_referrals_link', ['link_id'], unique=False)
        batch_op.create_index('ix_referrals_shop_created', ['shop_id', 'created_at'], unique=False)

    with op.batch_alter_table('paid_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shopify_customer_id', sa.BigInteger(), nullable=True))
        batch_op.create_index('ix_paid_orders_customer', ['shop_id', 'shopify_customer_id', 'paid_at'], unique=False, postgresql_where=sa.text('shopify_customer_id IS NOT NULL'), sqlite_where=sa.text('shopify_customer_id IS NOT NULL'))

    with op.batch_alter_table('pool_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('order_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('redeemed_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_pool_codes_shop_handed_out', ['shop_id', 'handed_out_at'], unique=False, postgresql_where=sa.text('handed_out_at IS NOT NULL'), sqlite_where=sa.text('handed_out_at IS NOT NULL'))
        batch_op.drop_constraint(batch_op.f('ck_pool_codes_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_pool_codes_status'), "status IN ('anchor', 'pending', 'available', 'handed_out', 'redeemed', 'failed', 'expired', 'removed')")

    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hold_days', sa.Integer(), server_default='14', nullable=False))
        batch_op.add_column(sa.Column('void_refund_percent', sa.Integer(), server_default='50', nullable=False))
        batch_op.add_column(sa.Column('first_order_only', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('block_same_email', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('rewards_per_advocate_per_month', sa.Integer(), server_default='10', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_column('rewards_per_advocate_per_month')
        batch_op.drop_column('block_same_email')
        batch_op.drop_column('first_order_only')
        batch_op.drop_column('void_refund_percent')
        batch_op.drop_column('hold_days')

    with op.batch_alter_table('pool_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_pool_codes_shop_handed_out', postgresql_where=sa.text('handed_out_at IS NOT NULL'), sqlite_where=sa.text('handed_out_at IS NOT NULL'))
        batch_op.drop_constraint(batch_op.f('ck_pool_codes_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_pool_codes_status'), "status IN ('anchor', 'pending', 'available', 'handed_out', 'failed', 'expired', 'removed')")
        batch_op.drop_column('redeemed_at')
        batch_op.drop_column('order_id')

    with op.batch_alter_table('paid_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_paid_orders_customer', postgresql_where=sa.text('shopify_customer_id IS NOT NULL'), sqlite_where=sa.text('shopify_customer_id IS NOT NULL'))
        batch_op.drop_column('shopify_customer_id')

    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index('ix_referrals_shop_created')
        batch_op.drop_index('ix_referrals_link')
        batch_op.drop_index('ix_referrals_held', postgresql_where=sa.text("status = 'held'"), sqlite_where=sa.text("status = 'held'"))
        batch_op.drop_index('ix_referrals_advocate')

    op.drop_table('referrals')
    with op.batch_alter_table('referral_click_hours', schema=None) as batch_op:
        batch_op.drop_index('ix_referral_click_hours_shop')

    op.drop_table('referral_click_hours')
