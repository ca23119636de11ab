"""Releases: the release current in each system's stage, and the release evidence and pilots
belong to

Revision ID: e7a1c3d5f902
Revises: 5c0a1f7e2b93
Create Date: 2026-12-08 03:00:00

Every column is nullable, so code of the release before can keep writing while this runs.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e7a1c3d5f902'
down_revision: str | None = '5c0a1f7e2b93'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _last_transitions(column: str) -> str:
    return (
        f'(SELECT t.{column} FROM transitions t WHERE t.system_id = systems.id'
        ' ORDER BY t.id DESC LIMIT 1)'
    )


def upgrade() -> None:
    with op.batch_alter_table('systems') as batch_op:
        batch_op.add_column(sa.Column('release_version', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('release_uri', sa.String(length=2000), nullable=True))
    with op.batch_alter_table('evidence') as batch_op:
        batch_op.add_column(sa.Column('release', sa.String(length=200), nullable=True))
    with op.batch_alter_table('pilots') as batch_op:
        batch_op.add_column(sa.Column('release', sa.String(length=200), nullable=True))
    # The release current in each system's stage is the one its last transition named.
    op.execute(
        'UPDATE systems SET'
        f' release_version = {_last_transitions("release_version")},'
        f' release_uri = {_last_transitions("release_uri")}'
    )


def downgrade() -> None:
    with op.batch_alter_table('pilots') as batch_op:
        batch_op.drop_column('release')
    with op.batch_alter_table('evidence') as batch_op:
        batch_op.drop_column('release')
    with op.batch_alter_table('systems') as batch_op:
        batch_op.drop_column('release_uri')
        batch_op.drop_column('release_version')
