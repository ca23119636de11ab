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
    recorded_at: datetime = Field(sa_type=UTCDateTime)
