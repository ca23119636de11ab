from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, Text, text
from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class Pilot(SQLModel, table=True):
    __tablename__ = "pilots"
    __table_args__ = (
        Index("ix_pilots_system_id_id", "system_id", "id"),
        # The portfolio lists the oldest stuck pilots: running ones, oldest first, stop at
        # the page, instead of joining every system to every running pilot.
        Index(
            "ix_pilots_running_created_at",
            "created_at",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    system_id: int = Field(
        sa_column=Column(Integer, ForeignKey("systems.id", ondelete="CASCADE"), nullable=False)
    )
    name: str = Field(max_length=200)
    objective: str | None = Field(default=None, sa_type=Text)
    planned_end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # [{metric, op, target, warning, weight, key}]: fixed when the pilot is created.
    criteria: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="running", max_length=20)
    outcome: str | None = Field(default=None, max_length=20)
    score: float | None = Field(default=None)
    # The release the pilot tries; its conclusion's evidence names it.
    release: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    created_by_name: str = Field(max_length=100)
    concluded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    concluded_by_name: str | None = Field(default=None, max_length=100)


class PilotResult(SQLModel, table=True):
    """Measurements a pipeline posted; kept as sent, findings included."""

    __tablename__ = "pilot_results"
    __table_args__ = (Index("ix_pilot_results_pilot_id_id", "pilot_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    pilot_id: int = Field(
        sa_column=Column(Integer, ForeignKey("pilots.id", ondelete="CASCADE"), nullable=False)
    )
    metrics: dict[str, float] = Field(sa_column=Column(JSON, nullable=False))
    sample_size: int | None = Field(default=None)
    window_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    window_end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    source: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    findings: list[str] = Field(sa_column=Column(JSON, nullable=False))
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    recorded_by_name: str = Field(max_length=100)
