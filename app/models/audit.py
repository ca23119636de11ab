from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class AuditPublicKey(SQLModel, table=True):
    """Every key that has signed a checkpoint, by its `key_id`: the public half only, so a
    checkpoint signed before a rotation still verifies. The private key never comes here:
    whoever can rewrite the log could otherwise sign a checkpoint for the rewritten one."""

    __tablename__ = "audit_public_keys"

    # The first 16 hex digits of the public key's SHA-256, as checkpoints name it.
    key_id: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(max_length=20)
    # Base64 of the raw public key (32 bytes for Ed25519).
    public_key: str = Field(max_length=100)
    # When a process of the service first signed with it (the first to record it wins).
    first_used_at: datetime = Field(sa_type=UTCDateTime)
