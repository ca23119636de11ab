from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer
from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class ReadinessSnapshot(SQLModel, table=True):
    __tablename__ = "readiness_snapshots"
    __table_args__ = (Index("ix_readiness_snapshots_system_id_id", "system_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    system_id: int = Field(
        sa_column=Column(Integer, ForeignKey("systems.id", ondelete="CASCADE"), nullable=False)
    )
    score: float
    level: str = Field(max_length=20)
    pilot_ready: bool
    production_ready: bool
    policy_version: int
    # None for snapshots taken before rules versions were recorded.
    rules_version: int | None = None
    recorded_at: datetime = Field(sa_type=UTCDateTime)


class ReadinessBlocker(SQLModel, table=True):
    """One blocking item of a system's stored readiness, as rows so reports can count them
    with an aggregate query on both back-ends."""

    __tablename__ = "readiness_blockers"
    __table_args__ = (
        Index("ix_readiness_blockers_system_id", "system_id"),
        # Covers the reports' per-control counts (index-only scans on PostgreSQL).
        Index(
            "ix_readiness_blockers_gate_control",
            "gate",
            "control",
            "system_id",
            postgresql_include=["code"],
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    system_id: int = Field(
        sa_column=Column(Integer, ForeignKey("systems.id", ondelete="CASCADE"), nullable=False)
    )
    gate: str = Field(max_length=20)
    code: str = Field(max_length=40)
    control: str | None = Field(default=None, max_length=40)
