"""Systems indexed by when their stored answer stops holding, for the scheduler that finds
answers time has made stale

Revision ID: b2e4f6a8c0d1
Revises: 8d4b6e2f1a70
Create Date: 2026-12-07 01:50:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'b2e4f6a8c0d1'
down_revision: str | None = '8d4b6e2f1a70'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('systems') as batch_op:
        batch_op.create_index(
            batch_op.f('ix_systems_readiness_valid_until'), ['readiness_valid_until'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('systems') as batch_op:
        batch_op.drop_index(batch_op.f('ix_systems_readiness_valid_until'))
