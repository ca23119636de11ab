"""Trust: team-scoped API keys, approvals that name their approver's teams, and actors
that name their kind, issuer and subject

Revision ID: 3b7e9d2a4c61
Revises: 8dbff7ab82b4
Create Date: 2026-12-01 15:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '3b7e9d2a4c61'
down_revision: str | None = '8dbff7ab82b4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column prefix, whether every row has an actor) of each record that names one.
ACTORS = (
    ('events', 'actor', True),
    ('transitions', 'actor', True),
    ('gate_checks', 'actor', True),
    ('approvals', 'approver', True),
    ('waivers', 'granted_by', True),
    ('waivers', 'revoked_by', False),
)


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch_op:
        batch_op.add_column(sa.Column('teams', sa.JSON(), nullable=True))
    with op.batch_alter_table('approvals') as batch_op:
        batch_op.add_column(sa.Column('approver_teams', sa.JSON(), nullable=True))
    for table, prefix, always in ACTORS:
        with op.batch_alter_table(table) as batch_op:
            if always:
                batch_op.add_column(
                    sa.Column(
                        f'{prefix}_kind',
                        sa.String(length=10),
                        nullable=False,
                        server_default='api_key',
                    )
                )
            else:
                batch_op.add_column(sa.Column(f'{prefix}_kind', sa.String(length=10), nullable=True))
            batch_op.add_column(sa.Column(f'{prefix}_issuer', sa.String(length=500), nullable=True))
            batch_op.add_column(sa.Column(f'{prefix}_subject', sa.String(length=500), nullable=True))
    # Until now only the service itself acted without a key (the bootstrap key's creation),
    # and a revocation named its key.
    op.execute("UPDATE events SET actor_kind = 'service' WHERE actor_id IS NULL")
    op.execute(
        "UPDATE waivers SET revoked_by_kind = 'api_key' WHERE revoked_by_name IS NOT NULL"
    )


def downgrade() -> None:
    for table, prefix, _ in reversed(ACTORS):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column(f'{prefix}_subject')
            batch_op.drop_column(f'{prefix}_issuer')
            batch_op.drop_column(f'{prefix}_kind')
    with op.batch_alter_table('approvals') as batch_op:
        batch_op.drop_column('approver_teams')
    with op.batch_alter_table('api_keys') as batch_op:
        batch_op.drop_column('teams')
