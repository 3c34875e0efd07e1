"""referral_links: a referral link per customer (active or retired); customers lose referral_token

Every customer used to get a token at first sight, whatever the referral program said, and nothing
ever used it (no route, no metafield; only the privacy export showed it). Links now have a table of
their own: created when the referral program is on or when the merchant asks, retirable, with a
click count and the state of the customer's metafield. The old tokens are dropped, not turned into
links: they were never handed to anyone, and a link must exist only where the merchant wants one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'referral_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=True),
        sa.Column('token', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('retired_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('clicks', sa.Integer(), server_default='0', nullable=False),
        sa.Column('last_clicked_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('synced_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('active', 'retired')", name=op.f('ck_referral_links_status')),
        sa.CheckConstraint("(status = 'retired') = (retired_at IS NOT NULL)",
                           name=op.f('ck_referral_links_retired_at')),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_referral_links_customer_id_customers'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_referral_links_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_links')),
        sa.UniqueConstraint('token', name=op.f('uq_referral_links_token')),
    )
    with op.batch_alter_table('referral_links', schema=None) as batch_op:
        batch_op.create_index('uq_referral_links_active_customer', ['shop_id', 'customer_id'], unique=True,
                              postgresql_where=sa.text("status = 'active'"),
                              sqlite_where=sa.text("status = 'active'"))
        batch_op.create_index('ix_referral_links_shop', ['shop_id', 'id'], unique=False)
        batch_op.create_index('ix_referral_links_customer', ['customer_id'], unique=False)
        batch_op.create_index('ix_referral_links_unsynced', ['shop_id'], unique=False,
                              postgresql_where=sa.text('synced_at IS NULL'),
                              sqlite_where=sa.text('synced_at IS NULL'))
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_constraint('uq_customers_referral_token', type_='unique')
        batch_op.drop_column('referral_token')


def downgrade() -> None:
    # Every customer gets a token again: its active link's, else a fresh random one (128 bits).
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('referral_token', sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(sa.text(
            "UPDATE customers SET referral_token = COALESCE((SELECT token FROM referral_links"
            " WHERE referral_links.customer_id = customers.id AND referral_links.status = 'active'),"
            " md5(random()::text || clock_timestamp()::text || id::text))"))
    else:
        op.execute(sa.text(
            "UPDATE customers SET referral_token = COALESCE((SELECT token FROM referral_links"
            " WHERE referral_links.customer_id = customers.id AND referral_links.status = 'active'),"
            " lower(hex(randomblob(16))))"))
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.alter_column('referral_token', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint('uq_customers_referral_token', ['referral_token'])
    with op.batch_alter_table('referral_links', schema=None) as batch_op:
        batch_op.drop_index('ix_referral_links_unsynced')
        batch_op.drop_index('ix_referral_links_customer')
        batch_op.drop_index('ix_referral_links_shop')
        batch_op.drop_index('uq_referral_links_active_customer')
    op.drop_table('referral_links')
