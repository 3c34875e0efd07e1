"""issued codes: when their metafields reached the customer

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('metafields_at', app.db.UTCDateTime(timezone=True), nullable=True))
    # Codes attached before this revision had their metafields written with their tag.
    op.execute("UPDATE issued_codes SET metafields_at = attached_at WHERE attached_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.drop_column('metafields_at')
