import base64
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from app.audit import service
from app.audit.service import Break, Checkpoint
from app.audit.signing import ALGORITHM, SigningKey, kept_public_key, verifies
from app.auth.dependencies import Admin, Viewer
from app.clock import Now
from app.db import DatabaseDep, read_transaction
from app.errors import Unprocessable
from app.models import AuditPublicKey as AuditPublicKeyRow
from app.openapi_docs import errors
from app.pagination import (
    DEFAULT_LIMIT,
    MAX_ID,
    Cursor,
    Limit,
    Page,
    decode_str_cursor,
    next_cursor_for,
)
from app.schemas import RequestModel

router = APIRouter(prefix="/v1/audit", tags=["audit"])

HASH = r"^[0-9a-f]{64}$"


def _signing_key(request: Request) -> SigningKey:
    signing_key: SigningKey = request.app.state.audit_signing_key
    return signing_key


SigningKeyDep = Annotated[SigningKey, Depends(_signing_key)]


class InvalidCheckpoint(Unprocessable):
    type = "invalid-checkpoint"
    title = "The checkpoint was not signed by any of this service's keys"


class AuditCheckpoint(RequestModel):
    """A signed head of the event log: what GET /v1/audit/checkpoint gives and POST
    /v1/audit/verify takes back."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": 1042,
                    "hash": "9f2c1e0b7a4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3",
                    "signed_at": "2026-12-07T02:00:00Z",
                    "signature": "q0xk2Bf3...base64 of 64 bytes...==",
                    "key_id": "3f1c9a7e5b2d4c6a",
                }
            ]
        },
    )

    event_id: int = Field(
        ge=0, le=MAX_ID, description="The newest event when signed; 0 for an empty log."
    )
    hash: str = Field(max_length=64, pattern=HASH, description="That event's `hash`.")
    signed_at: str = Field(
        max_length=40,
        json_schema_extra={"format": "date-time"},
        description="When it was signed, exactly as signed: keep the text as it is.",
    )
    signature: str = Field(
        max_length=200,
        description="Base64 of the Ed25519 signature of the UTF-8 text"
        " `{event_id}:{hash}:{signed_at}`.",
    )
    key_id: str = Field(
        max_length=64,
        description="The signing key: GET /v1/audit/public-key gives the current one,"
        " GET /v1/audit/public-keys every one the service has signed with.",
    )

    def unsigned(self) -> str:
        return service.signed_text(self.event_id, self.hash, self.signed_at)


class AuditVerification(BaseModel):
    ok: bool = Field(
        description="True when every event still gives its hash and links to the last."
    )
    checked: int = Field(description="Events read, up to and including the first bad one.")
    first_bad_id: int | None = Field(
        description="The first event that does not hold: `altered` (its content no longer"
        " gives its hash), `unlinked` (the one after rows were removed or inserted), or the"
        " checkpoint's event (`checkpoint_missing`, `checkpoint_differs`). Null when `ok`."
    )
    reason: Break | None = Field(default=None, description="Why not `ok`; null when `ok`.")


class AuditPublicKey(BaseModel):
    key_id: str
    algorithm: Literal["Ed25519"]
    public_key: str = Field(description="Base64 of the raw 32-byte public key.")


class AuditKeptPublicKey(AuditPublicKey):
    first_used_at: datetime = Field(
        description="When the service first signed a checkpoint with it."
    )


@router.get(
    "/verify",
    summary="Verify the event log's hash chain",
    description=(
        "Recomputes every event's hash from its content and the hash before it, oldest"
        " first, and names the first event that does not hold. It reads the whole log: on a"
        " long one, this takes seconds."
    ),
    responses=errors(401, 403),
)
def verify_chain(_actor: Admin, database: DatabaseDep) -> AuditVerification:
    with read_transaction(database) as session:
        return AuditVerification(**asdict(service.verify(session)))


@router.post(
    "/verify",
    summary="Verify the event log against a saved checkpoint",
    description=(
        "As GET, and the chain must still pass through the checkpoint's event with the"
        " checkpoint's hash: rows deleted from the end, or a chain rewritten with fresh"
        " hashes, no longer reach a checkpoint signed before. The signature is checked with"
        " the key its `key_id` names: the current one, or one the service signed with"
        " before a rotation (GET /v1/audit/public-keys). A checkpoint naming no such key, or"
        " whose signature does not verify with it, is 422 `invalid-checkpoint`."
    ),
    responses=errors(400, 401, 403, 422),
)
def verify_against_checkpoint(
    _actor: Admin, database: DatabaseDep, signing_key: SigningKeyDep, body: AuditCheckpoint
) -> AuditVerification:
    signer = signing_key.get()
    with read_transaction(database) as session:
        if body.key_id == signer.key_id:
            public_key: bytes | None = signer.public_key
        else:
            public_key = kept_public_key(session, body.key_id)
        if public_key is None:
            raise InvalidCheckpoint(
                "the checkpoint names a key this service has not signed with",
                errors=[{"field": "key_id", "message": "names no key of this service"}],
            )
        if not verifies(public_key, body.unsigned(), body.signature):
            raise InvalidCheckpoint(
                "the checkpoint's signature does not verify with the key it names",
                errors=[{"field": "signature", "message": "does not verify"}],
            )
        reaching = Checkpoint(**body.model_dump())
        return AuditVerification(**asdict(service.verify(session, reaching=reaching)))


@router.get(
    "/checkpoint",
    summary="Sign the head of the event log",
    description=(
        "The newest event's id and hash, signed with Ed25519: keep it outside the service,"
        " and later POST it to /v1/audit/verify, or check it offline with the public key."
    ),
    responses=errors(401, 403),
)
def get_checkpoint(
    _actor: Viewer, database: DatabaseDep, signing_key: SigningKeyDep, now: Now
) -> AuditCheckpoint:
    # Its public key kept first, so the checkpoint stays verifiable after a rotation.
    signer = signing_key.recorded()
    with read_transaction(database) as session:
        signed = service.checkpoint(session, signer, now=now)
    return AuditCheckpoint(**asdict(signed))


@router.get(
    "/public-key",
    summary="The key that signs checkpoints",
    description=(
        "The Ed25519 public key an auditor checks checkpoints with, offline: keep it beside"
        " the checkpoints. `key_id` names it in each checkpoint."
    ),
    responses=errors(401, 403),
)
def get_public_key(_actor: Viewer, signing_key: SigningKeyDep) -> AuditPublicKey:
    signer = signing_key.get()
    return AuditPublicKey(
        key_id=signer.key_id,
        algorithm=ALGORITHM,
        public_key=base64.b64encode(signer.public_key).decode(),
    )


@router.get(
    "/public-keys",
    summary="Every key that has signed checkpoints",
    description=(
        "The public key of every key the service has signed a checkpoint with, the current"
        " one and those before a rotation, by `key_id` (ordered by it): an auditor checks a"
        " checkpoint offline with the key its `key_id` names. Compare them with the keys"
        " you kept: one you never saw names a key someone added to the database."
    ),
    responses=errors(400, 401, 403),
)
def list_public_keys(
    _actor: Viewer, database: DatabaseDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[AuditKeptPublicKey]:
    after = decode_str_cursor(cursor)
    query = select(AuditPublicKeyRow).order_by(col(AuditPublicKeyRow.key_id)).limit(limit + 1)
    if after is not None:
        query = query.where(col(AuditPublicKeyRow.key_id) > after)
    with read_transaction(database) as session:
        rows = list(session.exec(query).all())
    return Page(
        items=[
            AuditKeptPublicKey(
                key_id=row.key_id,
                algorithm=ALGORITHM,
                public_key=row.public_key,
                first_used_at=row.first_used_at,
            )
            for row in rows[:limit]
        ],
        next_cursor=next_cursor_for(rows, limit, lambda row: row.key_id),
    )
