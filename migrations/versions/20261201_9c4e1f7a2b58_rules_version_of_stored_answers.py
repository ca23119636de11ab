"""Rules version of stored readiness answers and history snapshots

Answers stored before this revision get version 0: which rules computed them is unknown, so
they are stale until re-evaluated (make reevaluate, or the start-up re-evaluation).

Revision ID: 9c4e1f7a2b58
Revises: 3b7e9d2a4c61
Create Date: 2026-12-01 19:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '9c4e1f7a2b58'
down_revision: str | None = '3b7e9d2a4c61'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('systems') as batch_op:
        batch_op.add_column(
            sa.Column('readiness_rules_version', sa.Integer(), nullable=False, server_default='0')
        )
    with op.batch_alter_table('readiness_snapshots') as batch_op:
        batch_op.add_column(sa.Column('rules_version', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('readiness_snapshots') as batch_op:
        batch_op.drop_column('rules_version')
    with op.batch_alter_table('systems') as batch_op:
        batch_op.drop_column('readiness_rules_version')
