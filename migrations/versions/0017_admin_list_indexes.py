"""indexes for the admin's lists: codes by status or program and issue time, referrals by status, a shop's
deliveries by time

Built with CREATE INDEX CONCURRENTLY on PostgreSQL (outside the migration's transaction), so that a store
with millions of codes keeps issuing and redeeming while they build.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 16:30:24.920352
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = [
    ('ix_issued_codes_shop_status_issued', 'issued_codes', ['shop_id', 'status', 'issued_at']),
    ('ix_issued_codes_shop_program_issued', 'issued_codes', ['shop_id', 'program_id', 'issued_at']),
    ('ix_referrals_shop_status', 'referrals', ['shop_id', 'status', 'id']),
    ('ix_webhook_events_shop_received', 'webhook_events', ['shop_domain', 'received_at']),
]


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, columns in INDEXES:
            op.create_index(name, table, columns, unique=False, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _ in reversed(INDEXES):
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
