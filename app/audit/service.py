"""Checkpoints of the event log's hash chain, and its verification."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import rfc8785
from sqlalchemy import Text, cast, select
from sqlmodel import Session

from app.audit import chain
from app.audit.signing import Signer
from app.events import service as events_service
from app.models import Event

# Rows read per query while verifying: memory stays flat whatever the log's length.
VERIFY_BATCH = 2_000

_EVENTS = Event.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Checkpoint:
    event_id: int
    hash: str
    signed_at: str
    signature: str
    key_id: str


class Break(StrEnum):
    """Why a verification failed."""

    altered = "altered"  # the event's content no longer gives its hash
    unlinked = "unlinked"  # its prev_hash is not the event before it: rows removed or added
    checkpoint_missing = "checkpoint_missing"  # the checkpoint's event is gone
    checkpoint_differs = "checkpoint_differs"  # the checkpoint's event has another hash


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: Break | None = None


def signed_text(event_id: int, hash: str, signed_at: str) -> str:
    """What a checkpoint's signature signs."""
    return f"{event_id}:{hash}:{signed_at}"


def checkpoint(session: Session, signer: Signer, *, now: datetime) -> Checkpoint:
    """The chain's head (event 0 and the genesis hash while the log is empty), signed."""
    event_id, hash = events_service.chain_head(session.connection())
    signed_at = chain.timestamp(now)
    signature = signer.sign(signed_text(event_id, hash, signed_at))
    return Checkpoint(event_id, hash, signed_at, signature, signer.key_id)


def verify(session: Session, *, reaching: Checkpoint | None = None) -> Verification:
    """Recomputes the chain from the first event and stops at the first that does not
    hold. With `reaching`, the chain must also pass through that checkpoint's event with
    its hash: a chain rewritten from some row on, hashes and all, holds together but no
    longer reaches a checkpoint signed before."""
    checked = 0
    prev_hash = chain.GENESIS
    if reaching is not None and reaching.event_id == 0 and reaching.hash != chain.GENESIS:
        return Verification(False, 0, 0, Break.checkpoint_differs)
    reached = reaching is None or reaching.event_id == 0
    for event in _events(session):
        if not reached and reaching is not None and event["id"] > reaching.event_id:
            return Verification(False, checked, reaching.event_id, Break.checkpoint_missing)
        checked += 1
        if event["prev_hash"] != prev_hash:
            return Verification(False, checked, event["id"], Break.unlinked)
        if _link(prev_hash, event) != event["hash"]:
            return Verification(False, checked, event["id"], Break.altered)
        if reaching is not None and event["id"] == reaching.event_id:
            if event["hash"] != reaching.hash:
                return Verification(False, checked, event["id"], Break.checkpoint_differs)
            reached = True
        prev_hash = event["hash"]
    if not reached:
        assert reaching is not None
        return Verification(False, checked, reaching.event_id, Break.checkpoint_missing)
    return Verification(True, checked)


def _link(prev_hash: str, event: dict[str, Any]) -> str | None:
    """The hash the event's stored content gives, or None when it cannot be read back."""
    try:
        occurred_at = event["occurred_at"]
        if isinstance(occurred_at, str):  # as SQLite stores it: UTC, no zone
            occurred_at = datetime.fromisoformat(occurred_at).replace(tzinfo=UTC)
        data = json.loads(event["data"])
        return chain.link(prev_hash, {**event, "occurred_at": occurred_at, "data": data})
    except (ValueError, TypeError, rfc8785.CanonicalizationError):
        return None


def _events(session: Session) -> Iterator[dict[str, Any]]:
    # Read as stored, not through the columns' types: a row rewritten by hand may hold what
    # the types would fail to decode (text that is no JSON, a number JSON cannot carry, on
    # SQLite a time that is no time), and verifying must name that row, not fail.
    connection = session.connection()
    as_stored = {"data", "occurred_at"} if connection.dialect.name == "sqlite" else {"data"}
    columns = [
        cast(column, Text).label(column.name) if column.name in as_stored else column
        for column in _EVENTS.columns
    ]
    after = 0
    while True:
        rows = connection.execute(
            select(*columns).where(_EVENTS.c.id > after).order_by(_EVENTS.c.id).limit(VERIFY_BATCH)
        ).all()
        for row in rows:
            yield dict(row._mapping)
        if len(rows) < VERIFY_BATCH:
            return
        after = rows[-1].id
