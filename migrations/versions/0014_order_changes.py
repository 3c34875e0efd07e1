"""order changes and email fingerprints: cancellations and refunds of paid orders; customers.email_hash

``orders/cancelled`` and ``refunds/create`` are recorded by Shopify order id in tables of their own
(``order_cancellations``, ``order_refunds`` unique per refund id), since they can arrive before the
order's ``orders/paid``; ``paid_orders`` gains the copy reconciliation keeps of them. Shops remember which
topics their setup subscribed, so that shops set up before get the new ones. Customers gain
the keyed hash of their normalised email (the self-referral check), never the email.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 14:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'order_cancellations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('shopify_order_id', sa.BigInteger(), nullable=False),
        sa.Column('cancelled_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('cancel_reason', sa.String(length=32), nullable=True),
        sa.Column('recorded_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_order_cancellations_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_order_cancellations')),
        sa.UniqueConstraint('shop_id', 'shopify_order_id', name=op.f('uq_order_cancellations_shop_id_shopify_order_id')),
    )
    op.create_table(
        'order_refunds',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('refund_id', sa.BigInteger(), nullable=False),
        sa.Column('shopify_order_id', sa.BigInteger(), nullable=False),
        sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=True),
        sa.Column('refunded_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('recorded_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_order_refunds_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_order_refunds')),
        sa.UniqueConstraint('shop_id', 'refund_id', name=op.f('uq_order_refunds_shop_id_refund_id')),
    )
    with op.batch_alter_table('order_refunds', schema=None) as batch_op:
        batch_op.create_index('ix_order_refunds_shop_order', ['shop_id', 'shopify_order_id'], unique=False)
    with op.batch_alter_table('paid_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancelled_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cancel_reason', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('refunded_amount', sa.Numeric(precision=14, scale=2), server_default='0',
                                      nullable=False))
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_hash', sa.String(length=64), nullable=True))
    # NULL for every shop set up before: the sweep sets them up again, which subscribes the new topics.
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_topics', sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_column('webhook_topics')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('email_hash')
    with op.batch_alter_table('paid_orders', schema=None) as batch_op:
        batch_op.drop_column('refunded_amount')
        batch_op.drop_column('cancel_reason')
        batch_op.drop_column('cancelled_at')
    with op.batch_alter_table('order_refunds', schema=None) as batch_op:
        batch_op.drop_index('ix_order_refunds_shop_order')
    op.drop_table('order_refunds')
    op.drop_table('order_cancellations')
