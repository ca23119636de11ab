"""People behind API keys: the person a key belongs to, and the approvals and waivers of a
key found by its id

Revision ID: 4f6a8c2e1b37
Revises: e7a1c3d5f902
Create Date: 2026-12-09 10:00:00

The column is nullable (a key without a person is a person of its own), so code of the
release before can keep creating keys while this runs.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '4f6a8c2e1b37'
down_revision: str | None = 'e7a1c3d5f902'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch_op:
        batch_op.add_column(sa.Column('person', sa.String(length=200), nullable=True))
    # Revoking a key stores again the answers of the systems it approved or waived for.
    with op.batch_alter_table('approvals') as batch_op:
        batch_op.create_index('ix_approvals_approver_id', ['approver_id'], unique=False)
    with op.batch_alter_table('waivers') as batch_op:
        batch_op.create_index('ix_waivers_granted_by_id', ['granted_by_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('waivers') as batch_op:
        batch_op.drop_index('ix_waivers_granted_by_id')
    with op.batch_alter_table('approvals') as batch_op:
        batch_op.drop_index('ix_approvals_approver_id')
    with op.batch_alter_table('api_keys') as batch_op:
        batch_op.drop_column('person')
