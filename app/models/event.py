from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from app.models.base import API_KEY_DEFAULT, UTCDateTime


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
    actor_kind: str = Field(default="api_key", max_length=10, sa_column_kwargs=API_KEY_DEFAULT)
    actor_issuer: str | None = Field(default=None, max_length=500)
    actor_subject: str | None = Field(default=None, max_length=500)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The hash chain (app.audit.chain): this event's link, and the one before it.
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
