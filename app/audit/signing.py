"""The key that signs checkpoints of the hash chain: Ed25519, from
READINESS_AUDIT_SIGNING_KEY, or else made at first start and kept in the database."""

import base64
import binascii
import hashlib
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from app.audit.seed import SEED_BYTES
from app.clock import Clock
from app.db import Database, write_transaction
from app.models import AuditSigningKey

ALGORITHM = "Ed25519"

logger = logging.getLogger("app")

_STORED_KEY_ID = 1
_KEEP_FIRST = {
    "postgresql": postgresql.insert(AuditSigningKey).on_conflict_do_nothing(index_elements=["id"]),
    "sqlite": sqlite.insert(AuditSigningKey).on_conflict_do_nothing(index_elements=["id"]),
}


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey

    @classmethod
    def from_seed(cls, seed: bytes) -> "Signer":
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_key(self) -> bytes:
        """The raw 32 bytes."""
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        """Names the key: the first 16 hex digits of its public key's SHA-256."""
        return hashlib.sha256(self.public_key).hexdigest()[:16]

    def sign(self, message: str) -> str:
        """Base64 of the signature of the UTF-8 text."""
        return base64.b64encode(self.private_key.sign(message.encode())).decode()

    def verifies(self, message: str, signature: str) -> bool:
        try:
            raw = base64.b64decode(signature, validate=True)
            self.private_key.public_key().verify(raw, message.encode())
        except (binascii.Error, ValueError, InvalidSignature):
            return False
        return True


class SigningKey:
    """The process's signer, loaded once: from the configured seed, or from the database,
    where the first process to ask stores a new one (and every other process then reads
    that one)."""

    def __init__(self, database: Database, *, seed: bytes | None, clock: Clock) -> None:
        self._database = database
        self._clock = clock
        self._signer = Signer.from_seed(seed) if seed is not None else None
        self._lock = threading.Lock()

    def get(self) -> Signer:
        if self._signer is None:
            with self._lock:
                if self._signer is None:
                    self._signer = Signer.from_seed(self._stored_seed())
        return self._signer

    def _stored_seed(self) -> bytes:
        with write_transaction(self._database) as session:
            row = session.get(AuditSigningKey, _STORED_KEY_ID)
            if row is None:
                _store_new(session, self._clock())
                row = session.get(AuditSigningKey, _STORED_KEY_ID)
            assert row is not None
        logger.warning(
            "READINESS_AUDIT_SIGNING_KEY is not set: checkpoints are signed with a key kept in"
            " the database, which is good only for trying the service out"
        )
        return base64.b64decode(row.seed)


def _store_new(session: Session, now: datetime) -> None:
    seed = base64.b64encode(secrets.token_bytes(SEED_BYTES)).decode()
    connection = session.connection()
    connection.execute(
        _KEEP_FIRST[connection.dialect.name],
        {"id": _STORED_KEY_ID, "seed": seed, "created_at": now},
    )
