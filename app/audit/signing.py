"""The key that signs checkpoints of the hash chain: Ed25519, from
READINESS_AUDIT_SIGNING_KEY, or else generated once and kept in a file readable by the
service's user only (app.audit.keyfile). The database keeps the public keys of every key that
has signed (audit_public_keys), never a private one."""

import base64
import binascii
import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from app.audit import keyfile
from app.clock import Clock
from app.db import Database, write_transaction
from app.models import AuditPublicKey

ALGORITHM = "Ed25519"

logger = logging.getLogger("app")

_KEEP_FIRST = {
    "postgresql": postgresql.insert(AuditPublicKey).on_conflict_do_nothing(
        index_elements=["key_id"]
    ),
    "sqlite": sqlite.insert(AuditPublicKey).on_conflict_do_nothing(index_elements=["key_id"]),
}


def key_id_of(public_key: bytes) -> str:
    """Names a key: the first 16 hex digits of its raw public key's SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def verifies(public_key: bytes, message: str, signature: str) -> bool:
    """Whether `signature` (base64) is the Ed25519 signature of the UTF-8 text by that key."""
    try:
        raw = base64.b64decode(signature, validate=True)
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw, message.encode())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


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
        return key_id_of(self.public_key)

    def sign(self, message: str) -> str:
        """Base64 of the signature of the UTF-8 text."""
        return base64.b64encode(self.private_key.sign(message.encode())).decode()

    def verifies(self, message: str, signature: str) -> bool:
        return verifies(self.public_key, message, signature)


class SigningKey:
    """The process's signer: the configured seed, or the key file's, loaded at start-up
    (`load`), so a key file the service refuses stops the process before it serves."""

    def __init__(
        self, database: Database, *, seed: bytes | None, key_file: Path, clock: Clock
    ) -> None:
        self._database = database
        self._clock = clock
        self._key_file = key_file
        self._signer = Signer.from_seed(seed) if seed is not None else None
        self._lock = threading.Lock()
        self._recorded = False

    def load(self) -> None:
        """Reads (or first makes) the key file unless a seed is configured; KeyFileError
        when the file is refused."""
        with self._lock:
            if self._signer is not None:
                return
            seed, made = keyfile.load_or_create(self._key_file)
            self._signer = Signer.from_seed(seed)
        # On every start, not only the first: the setting is missing wherever this shows.
        logger.warning(
            "READINESS_AUDIT_SIGNING_KEY is not set: checkpoints are signed with the key %s"
            " %s, which is good only for trying the service out (each replica with its own"
            " file signs with its own key); set READINESS_AUDIT_SIGNING_KEY from a secret store",
            "generated in" if made else "kept in",
            self._key_file,
        )

    def get(self) -> Signer:
        if self._signer is None:
            self.load()
        assert self._signer is not None
        return self._signer

    def recorded(self) -> Signer:
        """The signer, once its public key is kept by key_id (first process to record it
        wins, so `first_used_at` is when the service first signed with it): call before
        signing, so every checkpoint names a key that stays verifiable after a rotation."""
        signer = self.get()
        if not self._recorded:
            with write_transaction(self._database) as session:
                record(session, signer, now=self._clock())
            self._recorded = True
        return signer


def record(session: Session, signer: Signer, *, now: datetime) -> None:
    connection = session.connection()
    connection.execute(
        _KEEP_FIRST[connection.dialect.name],
        {
            "key_id": signer.key_id,
            "algorithm": ALGORITHM,
            "public_key": base64.b64encode(signer.public_key).decode(),
            "first_used_at": now,
        },
    )


def kept_public_key(session: Session, key_id: str) -> bytes | None:
    """The raw public key kept under `key_id`; None when there is none, or when the row's key
    does not give that id (a row written by hand cannot pass off another key as one the
    service signed with)."""
    row = session.get(AuditPublicKey, key_id)
    if row is None or row.algorithm != ALGORITHM:
        return None
    try:
        public_key = base64.b64decode(row.public_key, validate=True)
    except (binascii.Error, ValueError):
        return None
    return public_key if key_id_of(public_key) == key_id else None
