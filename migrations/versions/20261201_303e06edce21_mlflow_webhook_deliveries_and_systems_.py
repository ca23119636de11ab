"""MLflow webhook deliveries taken (their ids, so a replay is seen by every process), and
systems by external_ref (how the webhook finds the systems linked to a registered model)

Revision ID: 303e06edce21
Revises: 9c4e1f7a2b58
Create Date: 2026-12-01 22:21:56
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '303e06edce21'
down_revision: str | None = '9c4e1f7a2b58'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'mlflow_deliveries',
        sa.Column('delivery_id', sa.String(length=100), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('delivery_id', name=op.f('pk_mlflow_deliveries')),
    )
    with op.batch_alter_table('mlflow_deliveries') as batch_op:
        batch_op.create_index(
            batch_op.f('ix_mlflow_deliveries_received_at'), ['received_at'], unique=False
        )
    with op.batch_alter_table('systems') as batch_op:
        batch_op.create_index(batch_op.f('ix_systems_external_ref'), ['external_ref'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('systems') as batch_op:
        batch_op.drop_index(batch_op.f('ix_systems_external_ref'))
    with op.batch_alter_table('mlflow_deliveries') as batch_op:
        batch_op.drop_index(batch_op.f('ix_mlflow_deliveries_received_at'))
    op.drop_table('mlflow_deliveries')
