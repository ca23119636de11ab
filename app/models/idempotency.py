from datetime import datetime

from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class IdempotentRequest(SQLModel, table=True):
    """A POST sent with an Idempotency-Key, and once it finished, the response to replay."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("caller", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    # SHA-256 of the caller's credentials: keys are scoped to the API key that sent them.
    caller: str = Field(max_length=64)
    key: str = Field(max_length=200)
    # SHA-256 of method, path, query and body: the same key with another request is refused.
    fingerprint: str = Field(max_length=64)
    status: int | None = Field(default=None)
    headers: list[list[str]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # Indexed: records past the retention period are deleted by age.
    created_at: datetime = Field(sa_type=UTCDateTime, index=True)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
