"""reconcile_cursors: the last few catch-up runs, not only the last

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-07 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('reconcile_cursors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recent_runs', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reconcile_cursors', schema=None) as batch_op:
        batch_op.drop_column('recent_runs')
