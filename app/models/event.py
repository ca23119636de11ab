from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class Event(SQLModel, table=True):
    """The audit log and integration feed: appended in the writer's transaction, never changed."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_system_key_id", "system_key", "id"),
        Index("ix_events_type_id", "type", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(max_length=40)
    system_key: str | None = Field(default=None, max_length=63)
    actor_id: int | None = Field(default=None)
    actor_name: str = Field(max_length=100)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
