"""program code format: alphabet and pattern

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# app.codes.generator.DEFAULT_ALPHABET as of this revision, written out so that the migration
# keeps meaning the same thing if the constant ever changes. Existing programs get it.
DEFAULT_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789'


def upgrade() -> None:
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code_alphabet', sa.String(length=64), server_default=DEFAULT_ALPHABET, nullable=False))
        batch_op.add_column(sa.Column('code_pattern', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_column('code_pattern')
        batch_op.drop_column('code_alphabet')
