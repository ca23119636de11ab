"""Hash-chained events (prev_hash and hash on every event, filled for the events already
there) and the audit checkpoint signing key made when none is configured

Revision ID: 8d4b6e2f1a70
Revises: 303e06edce21
Create Date: 2026-12-07 02:00:00
"""
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import rfc8785
import sqlalchemy as sa
from alembic import op

revision: str = '8d4b6e2f1a70'
down_revision: str | None = '303e06edce21'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = '0' * 64
BATCH = 2_000

events = sa.table(
    'events',
    sa.column('id', sa.Integer),
    sa.column('type', sa.String),
    sa.column('system_key', sa.String),
    sa.column('actor_id', sa.Integer),
    sa.column('actor_name', sa.String),
    sa.column('actor_kind', sa.String),
    sa.column('actor_issuer', sa.String),
    sa.column('actor_subject', sa.String),
    sa.column('occurred_at', sa.DateTime(timezone=True)),
    sa.column('data', sa.JSON),
    sa.column('prev_hash', sa.String),
    sa.column('hash', sa.String),
)


# The chain's rule as of this revision (the app's app/audit/chain.py keeps it since).
def _link(prev_hash: str, event: Any) -> str:
    occurred_at: datetime = event.occurred_at
    occurred_at = (
        occurred_at.replace(tzinfo=UTC) if occurred_at.tzinfo is None else occurred_at
    ).astimezone(UTC)
    document = {
        'id': event.id,
        'type': event.type,
        'system_key': event.system_key,
        'actor': {
            'kind': event.actor_kind or 'api_key',
            'id': event.actor_id,
            'name': event.actor_name,
            'issuer': event.actor_issuer,
            'subject': event.actor_subject,
        },
        'occurred_at': occurred_at.isoformat().replace('+00:00', 'Z'),
        'data': event.data,
    }
    return hashlib.sha256(prev_hash.encode() + rfc8785.dumps(document)).hexdigest()


def _fill_chain() -> None:
    connection = op.get_bind()
    prev_hash = GENESIS
    after = 0
    while True:
        rows = connection.execute(
            sa.select(events).where(events.c.id > after).order_by(events.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        links = []
        for row in rows:
            hash = _link(prev_hash, row)
            links.append({'event_id': row.id, 'prev_hash': prev_hash, 'hash': hash})
            prev_hash = hash
        connection.execute(
            events.update()
            .where(events.c.id == sa.bindparam('event_id'))
            .values(prev_hash=sa.bindparam('prev_hash'), hash=sa.bindparam('hash')),
            links,
        )
        after = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table('events') as batch_op:
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
    _fill_chain()
    with op.batch_alter_table('events') as batch_op:
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
    op.create_table(
        'audit_signing_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('seed', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_signing_keys')),
    )


def downgrade() -> None:
    op.drop_table('audit_signing_keys')
    with op.batch_alter_table('events') as batch_op:
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
