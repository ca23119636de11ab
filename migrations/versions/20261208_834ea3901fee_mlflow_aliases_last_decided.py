"""The last decision on each MLflow alias mapped to a stage, which reconciliation compares
with MLflow's aliases to find those set while the service was not told

Revision ID: 834ea3901fee
Revises: fe9d6334faa0
Create Date: 2026-12-08 03:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '834ea3901fee'
down_revision: str | None = 'fe9d6334faa0'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'mlflow_aliases',
        sa.Column('model', sa.String(length=500), nullable=False),
        sa.Column('alias', sa.String(length=255), nullable=False),
        sa.Column('version', sa.String(length=200), nullable=False),
        sa.Column('allowed', sa.Boolean(), nullable=False),
        sa.Column('gate_check_id', sa.Integer(), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('model', 'alias', name=op.f('pk_mlflow_aliases')),
    )


def downgrade() -> None:
    op.drop_table('mlflow_aliases')
