from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class AuditSigningKey(SQLModel, table=True):
    """The checkpoint signing key made at first start when READINESS_AUDIT_SIGNING_KEY is
    unset: one row, id 1, so every process and replica signs with the same key. A key kept
    beside the log it vouches for proves little; it is for trying the service out."""

    __tablename__ = "audit_signing_keys"

    id: int = Field(primary_key=True)
    # Base64 of the Ed25519 private key's 32-byte seed.
    seed: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
