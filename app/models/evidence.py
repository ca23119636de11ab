from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class Evidence(SQLModel, table=True):
    """One recorded version of the evidence for one control of one system.

    Versions are never changed apart from `is_current`, which marks the newest one so a
    readiness evaluation reads one row per control however long the history is.
    """

    __tablename__ = "evidence"
    __table_args__ = (
        UniqueConstraint("system_id", "control", "version"),
        Index("ix_evidence_system_id_is_current", "system_id", "is_current"),
        # The portfolio's stale-evidence count reads only current versions' dates: on
        # PostgreSQL an index-only scan of this, not the whole history.
        Index(
            "ix_evidence_current_dates",
            "system_id",
            postgresql_include=["recorded_at", "expires_at"],
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    system_id: int = Field(
        sa_column=Column(Integer, ForeignKey("systems.id", ondelete="CASCADE"), nullable=False)
    )
    control: str = Field(max_length=40)
    version: int
    status: str = Field(max_length=20)
    summary: str | None = Field(default=None, sa_type=Text)
    uri: str | None = Field(default=None, max_length=2000)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    recorded_by: int | None = Field(default=None)
    source: str = Field(default="api", max_length=200)
    # The release (model version) this evidence belongs to; null: every release. Only the
    # policy's release-bound controls tell releases apart (docs/domain.md, Releases).
    release: str | None = Field(default=None, max_length=200)
    is_current: bool = Field(default=True)
