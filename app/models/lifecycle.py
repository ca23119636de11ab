from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, Text
from sqlmodel import Field, SQLModel

from app.models.base import API_KEY_DEFAULT, UTCDateTime


def _system_fk() -> Any:
    return Field(
        sa_column=Column(Integer, ForeignKey("systems.id", ondelete="CASCADE"), nullable=False)
    )


class Transition(SQLModel, table=True):
    """A recorded stage change: the lifecycle's audit record, never changed."""

    __tablename__ = "transitions"
    __table_args__ = (Index("ix_transitions_system_id_occurred_at", "system_id", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True)
    system_id: int = _system_fk()
    from_stage: str = Field(max_length=20)
    to_stage: str = Field(max_length=20)
    reason: str = Field(sa_type=Text)
    release_version: str | None = Field(default=None, max_length=200)
    release_uri: str | None = Field(default=None, max_length=2000)
    gate: str | None = Field(default=None, max_length=20)
    score: float
    policy_version: int
    blocking: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    override_justification: str | None = Field(default=None, sa_type=Text)
    actor_id: int | None = Field(default=None)
    actor_name: str = Field(max_length=100)
    actor_kind: str = Field(default="api_key", max_length=10, sa_column_kwargs=API_KEY_DEFAULT)
    actor_issuer: str | None = Field(default=None, max_length=500)
    actor_subject: str | None = Field(default=None, max_length=500)
    occurred_at: datetime = Field(sa_type=UTCDateTime)


class GateCheck(SQLModel, table=True):
    """What a platform was told when it asked whether it may promote a system."""

    __tablename__ = "gate_checks"
    __table_args__ = (Index("ix_gate_checks_system_id_id", "system_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    system_id: int = _system_fk()
    target_stage: str = Field(max_length=20)
    allowed: bool
    score: float
    required_score: float | None = Field(default=None)
    blocking: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    policy_version: int
    release_version: str | None = Field(default=None, max_length=200)
    release_uri: str | None = Field(default=None, max_length=2000)
    actor_id: int | None = Field(default=None)
    actor_name: str = Field(max_length=100)
    actor_kind: str = Field(default="api_key", max_length=10, sa_column_kwargs=API_KEY_DEFAULT)
    actor_issuer: str | None = Field(default=None, max_length=500)
    actor_subject: str | None = Field(default=None, max_length=500)
    checked_at: datetime = Field(sa_type=UTCDateTime)


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"
    __table_args__ = (
        Index("ix_approvals_system_id_id", "system_id", "id"),
        # Revoking a key stores again the answers of the systems it approved for.
        Index("ix_approvals_approver_id", "approver_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    system_id: int = _system_fk()
    target_stage: str = Field(max_length=20)
    decision: str = Field(max_length=10)
    comment: str | None = Field(default=None, sa_type=Text)
    approver_id: int | None = Field(default=None)
    approver_name: str = Field(max_length=100)
    approver_kind: str = Field(default="api_key", max_length=10, sa_column_kwargs=API_KEY_DEFAULT)
    approver_issuer: str | None = Field(default=None, max_length=500)
    approver_subject: str | None = Field(default=None, max_length=500)
    # The teams the approver acted for (null: platform-wide), so that an approval stops
    # counting where the system's owner team or tier later asks for independence from them.
    approver_teams: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(sa_type=UTCDateTime)


class Waiver(SQLModel, table=True):
    __tablename__ = "waivers"
    __table_args__ = (
        Index("ix_waivers_system_id_id", "system_id", "id"),
        # Revoking a key stores again the answers of the systems it waived controls for.
        Index("ix_waivers_granted_by_id", "granted_by_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    system_id: int = _system_fk()
    control: str = Field(max_length=40)
    justification: str = Field(sa_type=Text)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    granted_by_id: int | None = Field(default=None)
    granted_by_name: str = Field(max_length=100)
    granted_by_kind: str = Field(default="api_key", max_length=10, sa_column_kwargs=API_KEY_DEFAULT)
    granted_by_issuer: str | None = Field(default=None, max_length=500)
    granted_by_subject: str | None = Field(default=None, max_length=500)
    granted_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by_id: int | None = Field(default=None)
    revoked_by_name: str | None = Field(default=None, max_length=100)
    revoked_by_kind: str | None = Field(default=None, max_length=10)
    revoked_by_issuer: str | None = Field(default=None, max_length=500)
    revoked_by_subject: str | None = Field(default=None, max_length=500)


class ClassificationConfirmation(SQLModel, table=True):
    """A person's confirmation of a system's risk tier: the record behind the system's
    `classification_confirmed_*` columns, kept when a tier change voids them."""

    __tablename__ = "classification_confirmations"
    __table_args__ = (Index("ix_classification_confirmations_system_id_id", "system_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    system_id: int = _system_fk()
    tier: str = Field(max_length=20)
    comment: str | None = Field(default=None, sa_type=Text)
    confirmed_by_id: int | None = Field(default=None)
    confirmed_by_name: str = Field(max_length=100)
    confirmed_by_kind: str = Field(
        default="api_key", max_length=10, sa_column_kwargs=API_KEY_DEFAULT
    )
    confirmed_by_issuer: str | None = Field(default=None, max_length=500)
    confirmed_by_subject: str | None = Field(default=None, max_length=500)
    # The teams the confirmer acted for (null: platform-wide), as for approvals.
    confirmed_by_teams: list[str] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    confirmed_at: datetime = Field(sa_type=UTCDateTime)
