from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, Text
from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class System(SQLModel, table=True):
    __tablename__ = "systems"
    __table_args__ = (
        # Reports and /metrics aggregate stored readiness over every system: on PostgreSQL
        # this index covers them (index-only scans), so they skip the wide rows, whose
        # readiness documents make the table several times larger than the columns read.
        Index(
            "ix_systems_stage_risk_tier_readiness",
            "stage",
            "risk_tier",
            postgresql_include=[
                "id",
                "score",
                "pilot_ready",
                "production_ready",
                "readiness_valid_until",
            ],
        ),
        # The scheduler's look for answers time has made stale (app.readiness.expiry), every
        # few seconds in every worker: a range scan instead of reading every system.
        Index("ix_systems_readiness_valid_until", "readiness_valid_until"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=63, unique=True)
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, sa_type=Text)
    purpose: str | None = Field(default=None, sa_type=Text)
    scope: str | None = Field(default=None, sa_type=Text)
    owner_team: str | None = Field(default=None, max_length=100, index=True)
    owner_contact: str | None = Field(default=None, max_length=200)
    # When the owner last changed: a weak_ownership finding stays open until after it.
    owner_updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    impact_areas: list[str] = Field(sa_column=Column(JSON, nullable=False))
    oversight: str = Field(max_length=30)
    declared_risk_tier: str | None = Field(default=None, max_length=20)
    risk_tier: str = Field(max_length=20, index=True)
    risk_tier_rule: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    labels: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    # Indexed: integrations find the systems linked to a thing of theirs by it
    # (`mlflow:models/<name>`, app.integrations.mlflow). Unique: one thing outside links to
    # one system, so one team's registry actions never decide another team's system (NULLs,
    # the systems linked to nothing, are many).
    external_ref: str | None = Field(default=None, max_length=500, index=True, unique=True)
    stage: str = Field(default="proposed", max_length=20, index=True)
    # The release the last transition named, so the one current in `stage` (null: it named
    # none). Kept with the stage so answers need no look at the transitions.
    release_version: str | None = Field(default=None, max_length=200)
    release_uri: str | None = Field(default=None, max_length=2000)
    # The tier a person last confirmed and that confirmation (a ClassificationConfirmation);
    # cleared by any change of the tier, so the confirmation holds only for the tier it saw.
    classification_confirmed_tier: str | None = Field(default=None, max_length=20)
    classification_confirmation_id: int | None = Field(default=None)
    # Bumped on every change of the representation; the ETag is derived from it.
    version: int = Field(default=1)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)

    # The current readiness, evaluated on every write that changes an input and stored,
    # so reads and filters need no evaluation. `readiness_valid_until` is the earliest
    # moment time alone changes the answer (evidence going stale); past it, reads
    # evaluate afresh.
    score: float = Field(default=0.0)
    level: str = Field(default="not_ready", max_length=20)
    pilot_ready: bool = Field(default=False, index=True)
    production_ready: bool = Field(default=False, index=True)
    readiness_document: str = Field(default="{}", sa_type=Text)
    readiness_policy_version: int = Field(default=1)
    # The rules version (app.readiness.rules_version) the answer was evaluated by; 0 for
    # answers stored before versions were recorded. An answer of other rules is stale.
    readiness_rules_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    readiness_valid_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set by every store of the answer to a value no snapshot taken before that store's
    # commit can have passed (app.readiness.marker.horizon): per-process mirrors read the
    # systems changed since their last look by this column.
    readiness_seq: int = Field(
        default=0, sa_type=BigInteger, index=True, sa_column_kwargs={"server_default": "0"}
    )


class SystemLabel(SQLModel, table=True):
    """Labels as rows, so `label=k:v` filters use an index on both back-ends."""

    __tablename__ = "system_labels"
    __table_args__ = (Index("ix_system_labels_name_value", "name", "value"),)

    system_id: int = Field(
        sa_column=Column(Integer, ForeignKey("systems.id", ondelete="CASCADE"), primary_key=True)
    )
    name: str = Field(primary_key=True, max_length=63)
    value: str = Field(max_length=200)
