"""reconciliation: paid orders, redemption anomalies, catch-up cursors, metrics and expiry indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_EXPIRY = "status IN ('created', 'attached') AND expires_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        'paid_orders',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('shopify_order_id', sa.BigInteger(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('total_price', sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column('subtotal_price', sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column('total_discounts', sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column('paid_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('our_codes', sa.Integer(), nullable=False),
        sa.Column('other_codes', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('recorded_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('webhook', 'catch_up')", name=op.f('ck_paid_orders_source')),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_paid_orders_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_paid_orders')),
        sa.UniqueConstraint('shop_id', 'shopify_order_id', name=op.f('uq_paid_orders_shop_id_shopify_order_id')),
    )
    op.create_index('ix_paid_orders_shop_paid', 'paid_orders', ['shop_id', 'paid_at'], unique=False,
                    postgresql_include=['currency', 'our_codes', 'total_price'])

    op.create_table(
        'redemption_anomalies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('code_id', sa.Integer(), nullable=False),
        sa.Column('shopify_order_id', sa.BigInteger(), nullable=False),
        sa.Column('order_name', sa.String(length=64), nullable=False),
        sa.Column('detected_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['code_id'], ['issued_codes.id'],
                                name=op.f('fk_redemption_anomalies_code_id_issued_codes'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_redemption_anomalies_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_redemption_anomalies')),
        sa.UniqueConstraint('shop_id', 'code_id', 'shopify_order_id',
                            name=op.f('uq_redemption_anomalies_shop_id_code_id_shopify_order_id')),
    )
    op.create_index(op.f('ix_redemption_anomalies_code_id'), 'redemption_anomalies', ['code_id'], unique=False)

    op.create_table(
        'reconcile_cursors',
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('updated_since', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('interval_minutes', sa.Integer(), nullable=False),
        sa.Column('next_run_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('walk_since', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('walk_after', sa.String(length=2000), nullable=True),
        sa.Column('walk_newest', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('walk_pages', sa.Integer(), nullable=False),
        sa.Column('walk_orders', sa.Integer(), nullable=False),
        sa.Column('walk_recovered', sa.Integer(), nullable=False),
        sa.Column('walk_started_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_completed_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_orders', sa.Integer(), nullable=False),
        sa.Column('last_recovered', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.CheckConstraint('interval_minutes BETWEEN 1 AND 1440', name=op.f('ck_reconcile_cursors_interval')),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_reconcile_cursors_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('shop_id', name=op.f('pk_reconcile_cursors')),
    )

    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('order_name', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('order_subtotal', sa.Numeric(precision=14, scale=2), nullable=True))
        batch_op.create_index('ix_issued_codes_shop_issued', ['shop_id', 'issued_at'], unique=False,
                              postgresql_include=['status', 'program_id', 'redeemed_at'])
        batch_op.create_index('ix_issued_codes_shop_redeemed', ['shop_id', 'redeemed_at'], unique=False,
                              postgresql_where=sa.text('redeemed_at IS NOT NULL'),
                              sqlite_where=sa.text('redeemed_at IS NOT NULL'),
                              postgresql_include=['issued_at', 'program_id', 'order_id', 'order_total',
                                                  'discount_amount', 'currency'])
        batch_op.create_index('ix_issued_codes_shop_open_expiry', ['shop_id', 'expires_at'], unique=False,
                              postgresql_where=sa.text(OPEN_EXPIRY), sqlite_where=sa.text(OPEN_EXPIRY))


def downgrade() -> None:
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_issued_codes_shop_open_expiry')
        batch_op.drop_index('ix_issued_codes_shop_redeemed')
        batch_op.drop_index('ix_issued_codes_shop_issued')
        batch_op.drop_column('order_subtotal')
        batch_op.drop_column('order_name')
    op.drop_table('reconcile_cursors')
    op.drop_index(op.f('ix_redemption_anomalies_code_id'), table_name='redemption_anomalies')
    op.drop_table('redemption_anomalies')
    op.drop_index('ix_paid_orders_shop_paid', table_name='paid_orders')
    op.drop_table('paid_orders')
