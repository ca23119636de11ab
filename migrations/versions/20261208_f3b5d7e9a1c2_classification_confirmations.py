"""Classification confirmations: a person's confirmation of a system's risk tier

Revision ID: f3b5d7e9a1c2
Revises: 4f6a8c2e1b37
Create Date: 2026-12-08 03:30:00

Nullable columns and a new table: code of the release before keeps working while this runs.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'f3b5d7e9a1c2'
down_revision: str | None = '4f6a8c2e1b37'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'classification_confirmations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('system_id', sa.Integer(), nullable=False),
        sa.Column('tier', sa.String(length=20), nullable=False),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('confirmed_by_id', sa.Integer(), nullable=True),
        sa.Column('confirmed_by_name', sa.String(length=100), nullable=False),
        sa.Column(
            'confirmed_by_kind', sa.String(length=10), server_default='api_key', nullable=False
        ),
        sa.Column('confirmed_by_issuer', sa.String(length=500), nullable=True),
        sa.Column('confirmed_by_subject', sa.String(length=500), nullable=True),
        sa.Column('confirmed_by_teams', sa.JSON(), nullable=True),
        sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['system_id'],
            ['systems.id'],
            name=op.f('fk_classification_confirmations_system_id_systems'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_classification_confirmations')),
    )
    with op.batch_alter_table('classification_confirmations') as batch_op:
        batch_op.create_index(
            'ix_classification_confirmations_system_id_id', ['system_id', 'id'], unique=False
        )
    with op.batch_alter_table('systems') as batch_op:
        batch_op.add_column(
            sa.Column('classification_confirmed_tier', sa.String(length=20), nullable=True)
        )
        batch_op.add_column(
            sa.Column('classification_confirmation_id', sa.Integer(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('systems') as batch_op:
        batch_op.drop_column('classification_confirmation_id')
        batch_op.drop_column('classification_confirmed_tier')
    with op.batch_alter_table('classification_confirmations') as batch_op:
        batch_op.drop_index('ix_classification_confirmations_system_id_id')
    op.drop_table('classification_confirmations')
