"""Audit signing: the database keeps public keys only (audit_public_keys, by key_id); the
seed a process generated and kept in audit_signing_keys is dropped

Revision ID: 9c72f9f73b72
Revises: 834ea3901fee
Create Date: 2026-12-09 02:00:00

A seed kept beside the log proves nothing: whoever can rewrite the log can read it and sign
a checkpoint for the rewritten log. A migration cannot put it anywhere safer (it runs in a
job, on another machine than the servers, which may have no writable disk), so the seed is
not carried over: its public key is kept, so the checkpoints it signed still verify, and a
service without READINESS_AUDIT_SIGNING_KEY makes a new key in its key file at next start.
Downgrading cannot bring the seed back: the old table comes back empty, and the code of the
release before makes a new key there at first use.
"""
import base64
import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

revision: str = '9c72f9f73b72'
down_revision: str | None = '834ea3901fee'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

signing_keys = sa.table(
    'audit_signing_keys',
    sa.column('id', sa.Integer),
    sa.column('seed', sa.String),
    sa.column('created_at', sa.DateTime(timezone=True)),
)
public_keys = sa.table(
    'audit_public_keys',
    sa.column('key_id', sa.String),
    sa.column('algorithm', sa.String),
    sa.column('public_key', sa.String),
    sa.column('first_used_at', sa.DateTime(timezone=True)),
)


def _public_key(seed: str) -> bytes | None:
    """The raw Ed25519 public key of a stored seed (base64 of 32 bytes); None for a row
    that holds something else, which could never have signed anything."""
    try:
        raw = base64.b64decode(seed, validate=True)
        private_key = Ed25519PrivateKey.from_private_bytes(raw)
    except ValueError:
        return None
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def upgrade() -> None:
    op.create_table(
        'audit_public_keys',
        sa.Column('key_id', sa.String(length=64), nullable=False),
        sa.Column('algorithm', sa.String(length=20), nullable=False),
        sa.Column('public_key', sa.String(length=100), nullable=False),
        sa.Column('first_used_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key_id', name=op.f('pk_audit_public_keys')),
    )
    connection = op.get_bind()
    kept = []
    for row in connection.execute(sa.select(signing_keys)).all():
        public_key = _public_key(row.seed)
        if public_key is not None:
            kept.append(
                {
                    # The key_id rule checkpoints name keys by: SHA-256's first 16 hex digits.
                    'key_id': hashlib.sha256(public_key).hexdigest()[:16],
                    'algorithm': 'Ed25519',
                    'public_key': base64.b64encode(public_key).decode(),
                    'first_used_at': row.created_at,
                }
            )
    if kept:
        connection.execute(public_keys.insert(), kept)
    op.drop_table('audit_signing_keys')


def downgrade() -> None:
    op.create_table(
        'audit_signing_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('seed', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_signing_keys')),
    )
    op.drop_table('audit_public_keys')
