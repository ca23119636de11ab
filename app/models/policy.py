from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class Policy(SQLModel, table=True):
    """A published policy version. Rows are never updated except for which one is active."""

    __tablename__ = "policies"
    __table_args__ = (
        # At most one active version, enforced by the database on both back-ends.
        Index(
            "uq_policies_one_active",
            "is_active",
            unique=True,
            sqlite_where=text("is_active"),
            postgresql_where=text("is_active"),
        ),
    )

    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # SHA-256 of the canonical document: lets a process reuse its parsed copy after
    # reading two small columns instead of the whole document.
    digest: str = Field(max_length=64)
    is_active: bool = Field(default=False)
    created_at: datetime = Field(sa_type=UTCDateTime)
    created_by: int | None = Field(default=None)
