"""Core schema: API keys, systems, evidence, policies (with default v1), readiness, events.

Revision ID: 7c2d54ce8afd
Revises: 
Create Date: 2026-11-26 05:40:05.120008
"""
import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from datetime import UTC, datetime

from alembic import op


revision: str = '7c2d54ce8afd'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Policy version 1 as this revision seeds it, written out: the data file the service ships
# may change, the history of a database may not.
POLICY_V1_DOCUMENT = json.loads(
    """
{
    "description": "Default policy. Required controls are cumulative: each tier needs what the tier below it needs for the same gate, and production needs everything the pilot gate of the same tier needs.",
    "weights": {},
    "approval_validity_days": 30,
    "max_waiver_days": 90,
    "max_pilot_days": 90,
    "tiers": {
        "minimal": {
            "pilot": {
                "min_score": 0.0,
                "required": [
                    "purpose",
                    "owner",
                    "scope"
                ],
                "approvals": 0
            },
            "production": {
                "min_score": 50.0,
                "required": [
                    "purpose",
                    "owner",
                    "scope",
                    "data_rules",
                    "access_boundaries",
                    "support_plan"
                ],
                "approvals": 0
            },
            "pilot_before_production": false,
            "accepted_pilot_outcomes": [],
            "evidence_fresh_days": null,
            "non_waivable": [],
            "not_applicable_forbidden": []
        },
        "limited": {
            "pilot": {
                "min_score": 30.0,
                "required": [
                    "purpose",
                    "owner",
                    "scope",
                    "data_rules",
                    "access_boundaries"
                ],
                "approvals": 0
            },
            "production": {
                "min_score": 70.0,
                "required": [
                    "purpose",
                    "owner",
                    "scope",
                    "data_rules",
                    "access_boundaries",
                    "testing_evidence",
                    "monitoring",
                    "fallback_process",
                    "human_oversight",
                    "training",
                    "workflow",
                    "support_plan"
                ],
                "approvals": 0
            },
            "pilot_before_production": false,
            "accepted_pilot_outcomes": [],
            "evidence_fresh_days": 365,
            "non_waivable": [],
            "not_applicable_forbidden": []
        },
        "high": {
            "pilot": {
                "min_score": 50.0,
                "required": [
                    "purpose",
                    "owner",
                    "scope",
                    "data_rules",
                    "access_boundaries",
                    "risk_review",
                    "human_oversight"
                ],
                "approvals": 0
            },
            "production": {
                "min_score": 85.0,
                "required": [
                    "purpose",
                    "owner",
                    "scope",
                    "data_rules",
                    "data_quality",
                    "access_boundaries",
                    "risk_review",
                    "testing_evidence",
                    "measurable_value",
                    "monitoring",
                    "support_plan",
                    "fallback_process",
                    "human_oversight",
                    "approval_path",
                    "training",
                    "workflow",
                    "rollout_plan"
                ],
                "approvals": 1
            },
            "pilot_before_production": true,
            "accepted_pilot_outcomes": [
                "pass",
                "warning"
            ],
            "evidence_fresh_days": 180,
            "non_waivable": [
                "human_oversight"
            ],
            "not_applicable_forbidden": []
        },
        "critical": {
            "pilot": {
                "min_score": 60.0,
                "required": [
                    "purpose",
                    "owner",
                    "scope",
                    "data_rules",
                    "access_boundaries",
                    "risk_review",
                    "human_oversight",
                    "fallback_process",
                    "approval_path"
                ],
                "approvals": 1
            },
            "production": {
                "min_score": 95.0,
                "required": [
                    "purpose",
                    "owner",
                    "scope",
                    "data_rules",
                    "data_quality",
                    "access_boundaries",
                    "risk_review",
                    "testing_evidence",
                    "measurable_value",
                    "monitoring",
                    "support_plan",
                    "fallback_process",
                    "human_oversight",
                    "approval_path",
                    "training",
                    "workflow",
                    "rollout_plan"
                ],
                "approvals": 2
            },
            "pilot_before_production": true,
            "accepted_pilot_outcomes": [
                "pass"
            ],
            "evidence_fresh_days": 90,
            "non_waivable": [
                "human_oversight",
                "fallback_process"
            ],
            "not_applicable_forbidden": []
        }
    }
}
"""
)


def _digest(document: dict) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(canonical.encode()).hexdigest()


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('system_key', sa.String(length=63), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sa.String(length=100), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_system_key_id', ['system_key', 'id'], unique=False)
        batch_op.create_index('ix_events_type_id', ['type', 'id'], unique=False)

    op.create_table('policies',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_policies'))
    )
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.create_index('uq_policies_one_active', ['is_active'], unique=True, sqlite_where=sa.text('is_active'), postgresql_where=sa.text('is_active'))

    op.create_table('systems',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=63), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('purpose', sa.Text(), nullable=True),
    sa.Column('scope', sa.Text(), nullable=True),
    sa.Column('owner_team', sa.String(length=100), nullable=True),
    sa.Column('owner_contact', sa.String(length=200), nullable=True),
    sa.Column('impact_areas', sa.JSON(), nullable=False),
    sa.Column('oversight', sa.String(length=30), nullable=False),
    sa.Column('declared_risk_tier', sa.String(length=20), nullable=True),
    sa.Column('risk_tier', sa.String(length=20), nullable=False),
    sa.Column('risk_tier_rule', sa.JSON(), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('external_ref', sa.String(length=500), nullable=True),
    sa.Column('stage', sa.String(length=20), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.Column('pilot_ready', sa.Boolean(), nullable=False),
    sa.Column('production_ready', sa.Boolean(), nullable=False),
    sa.Column('readiness_document', sa.Text(), nullable=False),
    sa.Column('readiness_policy_version', sa.Integer(), nullable=False),
    sa.Column('readiness_valid_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_systems')),
    sa.UniqueConstraint('key', name=op.f('uq_systems_key'))
    )
    with op.batch_alter_table('systems', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_systems_owner_team'), ['owner_team'], unique=False)
        batch_op.create_index(batch_op.f('ix_systems_pilot_ready'), ['pilot_ready'], unique=False)
        batch_op.create_index(batch_op.f('ix_systems_production_ready'), ['production_ready'], unique=False)
        batch_op.create_index(batch_op.f('ix_systems_risk_tier'), ['risk_tier'], unique=False)
        batch_op.create_index(batch_op.f('ix_systems_stage'), ['stage'], unique=False)

    op.create_table('evidence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('system_id', sa.Integer(), nullable=False),
    sa.Column('control', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('uri', sa.String(length=2000), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['system_id'], ['systems.id'], name=op.f('fk_evidence_system_id_systems'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evidence')),
    sa.UniqueConstraint('system_id', 'control', 'version', name=op.f('uq_evidence_system_id_control_version'))
    )
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.create_index('ix_evidence_system_id_is_current', ['system_id', 'is_current'], unique=False)

    op.create_table('readiness_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('system_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.Column('pilot_ready', sa.Boolean(), nullable=False),
    sa.Column('production_ready', sa.Boolean(), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['system_id'], ['systems.id'], name=op.f('fk_readiness_snapshots_system_id_systems'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_readiness_snapshots'))
    )
    with op.batch_alter_table('readiness_snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_readiness_snapshots_system_id_id', ['system_id', 'id'], unique=False)

    op.create_table('system_labels',
    sa.Column('system_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['system_id'], ['systems.id'], name=op.f('fk_system_labels_system_id_systems'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('system_id', 'name', name=op.f('pk_system_labels'))
    )
    with op.batch_alter_table('system_labels', schema=None) as batch_op:
        batch_op.create_index('ix_system_labels_name_value', ['name', 'value'], unique=False)

    # ### end Alembic commands ###
    policies = sa.table(
        'policies',
        sa.column('version', sa.Integer()),
        sa.column('document', sa.JSON()),
        sa.column('digest', sa.String()),
        sa.column('is_active', sa.Boolean()),
        sa.column('created_at', sa.DateTime(timezone=True)),
        sa.column('created_by', sa.Integer()),
    )
    op.bulk_insert(
        policies,
        [
            {
                'version': 1,
                'document': POLICY_V1_DOCUMENT,
                'digest': _digest(POLICY_V1_DOCUMENT),
                'is_active': True,
                'created_at': datetime.now(UTC),
                'created_by': None,
            }
        ],
    )


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table('system_labels', schema=None) as batch_op:
        batch_op.drop_index('ix_system_labels_name_value')

    op.drop_table('system_labels')
    with op.batch_alter_table('readiness_snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_readiness_snapshots_system_id_id')

    op.drop_table('readiness_snapshots')
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_index('ix_evidence_system_id_is_current')

    op.drop_table('evidence')
    with op.batch_alter_table('systems', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_systems_stage'))
        batch_op.drop_index(batch_op.f('ix_systems_risk_tier'))
        batch_op.drop_index(batch_op.f('ix_systems_production_ready'))
        batch_op.drop_index(batch_op.f('ix_systems_pilot_ready'))
        batch_op.drop_index(batch_op.f('ix_systems_owner_team'))

    op.drop_table('systems')
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.drop_index('uq_policies_one_active', sqlite_where=sa.text('is_active'), postgresql_where=sa.text('is_active'))

    op.drop_table('policies')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_type_id')
        batch_op.drop_index('ix_events_system_key_id')

    op.drop_table('events')
    op.drop_table('api_keys')
    # ### end Alembic commands ###
