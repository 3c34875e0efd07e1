"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 03:22:20.012743
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('shops',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('access_token', sa.LargeBinary(), nullable=True),
    sa.Column('access_token_expires_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('refresh_token', sa.LargeBinary(), nullable=True),
    sa.Column('refresh_token_expires_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('scopes', sa.String(length=1000), nullable=False),
    sa.Column('api_version', sa.String(length=20), nullable=False),
    sa.Column('installed_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('uninstalled_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('setup_completed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('setup_error', sa.Text(), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shops')),
    sa.UniqueConstraint('domain', name=op.f('uq_shops_domain'))
    )
    op.create_table('webhook_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('webhook_id', sa.String(length=255), nullable=True),
    sa.Column('shop_domain', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=100), nullable=False),
    sa.Column('api_version', sa.String(length=20), nullable=True),
    sa.Column('triggered_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('received_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'processed', 'failed', 'ignored')", name=op.f('ck_webhook_events_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_webhook_events_event_id'))
    )
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_events_shop_topic', ['shop_domain', 'topic'], unique=False)
        batch_op.create_index('ix_webhook_events_status_received', ['status', 'received_at'], unique=False)

    op.create_table('customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('shopify_customer_id', sa.BigInteger(), nullable=False),
    sa.Column('referral_token', sa.String(length=64), nullable=False),
    sa.Column('referred_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['referred_by_id'], ['customers.id'], name=op.f('fk_customers_referred_by_id_customers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_customers_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers')),
    sa.UniqueConstraint('referral_token', name=op.f('uq_customers_referral_token')),
    sa.UniqueConstraint('shop_id', 'shopify_customer_id', name=op.f('uq_customers_shop_id_shopify_customer_id'))
    )
    op.create_table('data_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('shopify_request_id', sa.BigInteger(), nullable=False),
    sa.Column('shopify_customer_id', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_data_requests_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_data_requests')),
    sa.UniqueConstraint('shop_id', 'shopify_request_id', name=op.f('uq_data_requests_shop_id_shopify_request_id'))
    )
    op.create_table('programs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('value_type', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('minimum_subtotal', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('expires_after_days', sa.Integer(), nullable=True),
    sa.Column('code_prefix', sa.String(length=16), nullable=False),
    sa.Column('code_length', sa.Integer(), nullable=False),
    sa.Column('lock_to_customer', sa.Boolean(), nullable=False),
    sa.Column('combines_with_product', sa.Boolean(), nullable=False),
    sa.Column('combines_with_order', sa.Boolean(), nullable=False),
    sa.Column('combines_with_shipping', sa.Boolean(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(value_type = 'percentage' AND value > 0 AND value <= 100) OR (value_type = 'fixed_amount' AND value > 0) OR (value_type = 'free_shipping' AND value = 0)", name=op.f('ck_programs_value_range')),
    sa.CheckConstraint("kind IN ('welcome', 'referral_friend', 'referral_reward', 'manual')", name=op.f('ck_programs_kind')),
    sa.CheckConstraint("value_type IN ('percentage', 'fixed_amount', 'free_shipping')", name=op.f('ck_programs_value_type')),
    sa.CheckConstraint('code_length BETWEEN 6 AND 32', name=op.f('ck_programs_code_length')),
    sa.CheckConstraint('expires_after_days IS NULL OR expires_after_days > 0', name=op.f('ck_programs_expiry')),
    sa.CheckConstraint('minimum_subtotal IS NULL OR minimum_subtotal > 0', name=op.f('ck_programs_minimum_subtotal')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_programs_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_programs'))
    )
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_programs_shop_id'), ['shop_id'], unique=False)
        batch_op.create_index('uq_programs_shop_kind', ['shop_id', 'kind'], unique=True, postgresql_where=sa.text("kind <> 'manual'"), sqlite_where=sa.text("kind <> 'manual'"))

    op.create_table('issued_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('discount_gid', sa.String(length=255), nullable=True),
    sa.Column('issued_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('redeemed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('order_id', sa.BigInteger(), nullable=True),
    sa.Column('order_total', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('discount_amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('reserved', 'created', 'attached', 'redeemed', 'expired', 'revoked', 'failed')", name=op.f('ck_issued_codes_status')),
    sa.CheckConstraint('code = upper(code)', name=op.f('ck_issued_codes_code_upper')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_issued_codes_customer_id_customers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_issued_codes_program_id_programs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_issued_codes_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_issued_codes')),
    sa.UniqueConstraint('shop_id', 'code', name=op.f('uq_issued_codes_shop_id_code')),
    sa.UniqueConstraint('shop_id', 'idempotency_key', name=op.f('uq_issued_codes_shop_id_idempotency_key'))
    )
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.create_index('ix_issued_codes_customer', ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_issued_codes_program_id'), ['program_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_issued_codes_program_id'))
        batch_op.drop_index('ix_issued_codes_customer')

    op.drop_table('issued_codes')
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_index('uq_programs_shop_kind', postgresql_where=sa.text("kind <> 'manual'"), sqlite_where=sa.text("kind <> 'manual'"))
        batch_op.drop_index(batch_op.f('ix_programs_shop_id'))

    op.drop_table('programs')
    op.drop_table('data_requests')
    op.drop_table('customers')
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_status_received')
        batch_op.drop_index('ix_webhook_events_shop_topic')

    op.drop_table('webhook_events')
    op.drop_table('shops')
