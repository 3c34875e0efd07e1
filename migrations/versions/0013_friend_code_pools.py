"""friend code pools: pool discounts, their single-use codes, each bulk creation; pool settings on programs

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('code_pools',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('terms', sa.JSON(), nullable=False),
    sa.Column('terms_key', sa.String(length=64), nullable=False),
    sa.Column('expires_after_days', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('hands_out_from', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('hands_out_until', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('discount_gid', sa.String(length=255), nullable=True),
    sa.Column('first_code', sa.String(length=64), nullable=False),
    sa.Column('create_attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('points_spent', sa.Integer(), server_default='0', nullable=False),
    sa.Column('store_removal_job', sa.String(length=255), nullable=True),
    sa.Column('removed_from_store_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('active', 'retired', 'removed')", name=op.f('ck_code_pools_status')),
    sa.CheckConstraint('expires_after_days IS NULL OR expires_after_days > 0', name=op.f('ck_code_pools_expiry')),
    sa.CheckConstraint('hands_out_until > hands_out_from', name=op.f('ck_code_pools_window')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_code_pools_program_id_programs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_code_pools_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_code_pools')),
    sa.UniqueConstraint('shop_id', 'program_id', 'terms_key', 'hands_out_from', name=op.f('uq_code_pools_shop_id_program_id_terms_key_hands_out_from'))
    )
    with op.batch_alter_table('code_pools', schema=None) as batch_op:
        batch_op.create_index('ix_code_pools_shop_program_status', ['shop_id', 'program_id', 'status'], unique=False)

    op.create_table('pool_bulk_creations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('gid', sa.String(length=255), nullable=True),
    sa.Column('requested', sa.Integer(), nullable=False),
    sa.Column('imported', sa.Integer(), nullable=True),
    sa.Column('failed', sa.Integer(), nullable=True),
    sa.Column('done', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('codes_read', sa.Integer(), server_default='0', nullable=False),
    sa.Column('codes_cursor', sa.String(length=2000), nullable=True),
    sa.ForeignKeyConstraint(['pool_id'], ['code_pools.id'], name=op.f('fk_pool_bulk_creations_pool_id_code_pools'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_pool_bulk_creations_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_bulk_creations'))
    )
    with op.batch_alter_table('pool_bulk_creations', schema=None) as batch_op:
        batch_op.create_index('ix_pool_bulk_creations_pool', ['shop_id', 'pool_id', 'done'], unique=False)

    op.create_table('pool_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('bulk_creation_id', sa.Integer(), nullable=True),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('visitor', sa.String(length=128), nullable=True),
    sa.Column('handed_out_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('redeem_code_gid', sa.String(length=255), nullable=True),
    sa.Column('store_removal_job', sa.String(length=255), nullable=True),
    sa.Column('removed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('anchor', 'pending', 'available', 'handed_out', 'failed', 'expired', 'removed')", name=op.f('ck_pool_codes_status')),
    sa.CheckConstraint('code = upper(code)', name=op.f('ck_pool_codes_code_upper')),
    sa.ForeignKeyConstraint(['bulk_creation_id'], ['pool_bulk_creations.id'], name=op.f('fk_pool_codes_bulk_creation_id_pool_bulk_creations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pool_id'], ['code_pools.id'], name=op.f('fk_pool_codes_pool_id_code_pools'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_pool_codes_program_id_programs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_pool_codes_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_codes')),
    sa.UniqueConstraint('shop_id', 'code', name=op.f('uq_pool_codes_shop_id_code'))
    )
    with op.batch_alter_table('pool_codes', schema=None) as batch_op:
        batch_op.create_index('ix_pool_codes_available', ['pool_id', 'id'], unique=False, postgresql_where=sa.text("status = 'available'"), sqlite_where=sa.text("status = 'available'"))
        batch_op.create_index('ix_pool_codes_creation', ['bulk_creation_id'], unique=False)
        batch_op.create_index('ix_pool_codes_handed_out_expiry', ['shop_id', 'expires_at'], unique=False, postgresql_where=sa.text("status = 'handed_out'"), sqlite_where=sa.text("status = 'handed_out'"))
        batch_op.create_index('uq_pool_codes_visitor', ['shop_id', 'program_id', 'visitor'], unique=True, postgresql_where=sa.text('visitor IS NOT NULL'), sqlite_where=sa.text('visitor IS NOT NULL'))

    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pool_low_water', sa.Integer(), server_default='200', nullable=False))
        batch_op.add_column(sa.Column('pool_size', sa.Integer(), server_default='1000', nullable=False))
        batch_op.add_column(sa.Column('pool_window_days', sa.Integer(), server_default='7', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_column('pool_window_days')
        batch_op.drop_column('pool_size')
        batch_op.drop_column('pool_low_water')

    with op.batch_alter_table('pool_codes', schema=None) as batch_op:
        batch_op.drop_index('uq_pool_codes_visitor', postgresql_where=sa.text('visitor IS NOT NULL'), sqlite_where=sa.text('visitor IS NOT NULL'))
        batch_op.drop_index('ix_pool_codes_handed_out_expiry', postgresql_where=sa.text("status = 'handed_out'"), sqlite_where=sa.text("status = 'handed_out'"))
        batch_op.drop_index('ix_pool_codes_creation')
        batch_op.drop_index('ix_pool_codes_available', postgresql_where=sa.text("status = 'available'"), sqlite_where=sa.text("status = 'available'"))

    op.drop_table('pool_codes')
    with op.batch_alter_table('pool_bulk_creations', schema=None) as batch_op:
        batch_op.drop_index('ix_pool_bulk_creations_pool')

    op.drop_table('pool_bulk_creations')
    with op.batch_alter_table('code_pools', schema=None) as batch_op:
        batch_op.drop_index('ix_code_pools_shop_program_status')

    op.drop_table('code_pools')
