from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    role: str = Field(max_length=20)
    # SHA-256 of the secret: keys are long random strings, so a fast hash is enough and
    # lets a request find its key with one indexed lookup.
    key_hash: str = Field(max_length=64, unique=True)
    key_prefix: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)
    created_by: int | None = Field(default=None)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The owner teams a scoped key acts for; null: every team (platform-wide).
    teams: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The person who holds the key (an e-mail, say): approvals are counted by person, so
    # two keys of one person count once. Null: the key is a person of its own.
    person: str | None = Field(default=None, max_length=200)
