"""Covering indexes for the portfolio, gaps and drift reports and /metrics.

At 100,000 systems the reports' aggregates read the wide systems rows (each carries its
readiness document) and the whole evidence history; these let PostgreSQL answer them with
index-only scans. On SQLite they are plain indexes (no INCLUDE).

Revision ID: 5e1d7c3b9a20
Revises: c029c0a6a0b6
Create Date: 2026-11-26 09:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '5e1d7c3b9a20'
down_revision: str | None = 'c029c0a6a0b6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('systems', schema=None) as batch_op:
        batch_op.create_index(
            'ix_systems_stage_risk_tier_readiness',
            ['stage', 'risk_tier'],
            unique=False,
            postgresql_include=[
                'id', 'score', 'pilot_ready', 'production_ready', 'readiness_valid_until'
            ],
        )
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.create_index(
            'ix_evidence_current_dates',
            ['system_id'],
            unique=False,
            postgresql_include=['recorded_at', 'expires_at'],
            postgresql_where=sa.text('is_current'),
            sqlite_where=sa.text('is_current'),
        )
    with op.batch_alter_table('readiness_blockers', schema=None) as batch_op:
        batch_op.drop_index('ix_readiness_blockers_gate_control')
        batch_op.create_index(
            'ix_readiness_blockers_gate_control',
            ['gate', 'control', 'system_id'],
            unique=False,
            postgresql_include=['code'],
        )


def downgrade() -> None:
    with op.batch_alter_table('readiness_blockers', schema=None) as batch_op:
        batch_op.drop_index('ix_readiness_blockers_gate_control')
        batch_op.create_index(
            'ix_readiness_blockers_gate_control', ['gate', 'control'], unique=False
        )
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_index('ix_evidence_current_dates')
    with op.batch_alter_table('systems', schema=None) as batch_op:
        batch_op.drop_index('ix_systems_stage_risk_tier_readiness')
