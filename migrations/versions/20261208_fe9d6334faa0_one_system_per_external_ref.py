"""One system per external_ref: the index on systems.external_ref becomes unique (NULLs, the
systems linked to nothing, stay many). An upgrade over systems that share one refuses, naming
them: which of them keeps the link is for their owners to say (docs/operations.md).

Revision ID: fe9d6334faa0
Revises: f3b5d7e9a1c2
Create Date: 2026-12-08 03:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'fe9d6334faa0'
down_revision: str | None = 'f3b5d7e9a1c2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _shared_external_refs() -> dict[str, list[str]]:
    rows = op.get_bind().execute(
        sa.text(
            'SELECT external_ref, key FROM systems WHERE external_ref IN ('
            ' SELECT external_ref FROM systems WHERE external_ref IS NOT NULL'
            ' GROUP BY external_ref HAVING count(*) > 1)'
            ' ORDER BY external_ref, key'
        )
    )
    shared: dict[str, list[str]] = {}
    for external_ref, key in rows:
        shared.setdefault(external_ref, []).append(key)
    return shared


def upgrade() -> None:
    shared = _shared_external_refs()
    if shared:
        listed = '; '.join(f'{ref!r}: {", ".join(keys)}' for ref, keys in shared.items())
        raise RuntimeError(
            'systems share an external_ref, which from this release links one system only: '
            f'{listed}. Leave it on one system of each (PATCH /v1/systems/<key> with'
            ' {"external_ref": null} on the others), then run the upgrade again.'
        )
    with op.batch_alter_table('systems') as batch_op:
        batch_op.drop_index(batch_op.f('ix_systems_external_ref'))
        batch_op.create_index(batch_op.f('ix_systems_external_ref'), ['external_ref'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('systems') as batch_op:
        batch_op.drop_index(batch_op.f('ix_systems_external_ref'))
        batch_op.create_index(batch_op.f('ix_systems_external_ref'), ['external_ref'], unique=False)
