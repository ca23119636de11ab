"""Idempotency-Key bookkeeping: claim a key before the work, store the response after it."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.db import Database, write_transaction
from app.models import IdempotentRequest

# A claim whose request never finished (its process died) may be taken over after this.
ABANDONED_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Claimed:
    record_id: int


@dataclass(frozen=True)
class Replay:
    status: int
    headers: list[list[str]]
    body: bytes


@dataclass(frozen=True)
class Reused:
    """The key was first sent with another request."""


@dataclass(frozen=True)
class InProgress:
    """The first request with this key is still running."""


Claim = Claimed | Replay | Reused | InProgress


def _decide(
    session: Session, existing: IdempotentRequest, fingerprint: str, now: datetime
) -> Claim:
    if existing.fingerprint != fingerprint:
        return Reused()
    if existing.status is not None:
        return Replay(existing.status, existing.headers or [], existing.body or b"")
    if existing.created_at < now - ABANDONED_AFTER:
        # Conditional on the claim still being the abandoned one: of two retries taking it
        # over at once, one wins and the other sees it in progress.
        taken = session.execute(
            update(IdempotentRequest)
            .where(
                col(IdempotentRequest.id) == existing.id,
                col(IdempotentRequest.status).is_(None),
                col(IdempotentRequest.created_at) == existing.created_at,
            )
            .values(created_at=now)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            assert existing.id is not None
            return Claimed(existing.id)
    return InProgress()


def claim(
    database: Database,
    *,
    caller: str,
    key: str,
    fingerprint: str,
    now: datetime,
    expired_before: datetime,
) -> Claim:
    """Claims `key` for this request, or says why not. A record of the key created before
    `expired_before` (past the retention period) counts as forgotten, whether or not a purge
    has deleted it yet."""
    for _ in range(2):  # a second look when a concurrent first request inserted meanwhile
        try:
            with write_transaction(database) as session:
                existing = session.exec(
                    select(IdempotentRequest).where(
                        col(IdempotentRequest.caller) == caller,
                        col(IdempotentRequest.key) == key,
                    )
                ).one_or_none()
                if existing is not None and existing.created_at < expired_before:
                    session.delete(existing)
                    session.flush()
                    existing = None
                if existing is not None:
                    return _decide(session, existing, fingerprint, now)
                record = IdempotentRequest(
                    caller=caller, key=key, fingerprint=fingerprint, created_at=now
                )
                session.add(record)
                session.flush()
                assert record.id is not None
                return Claimed(record.id)
        except IntegrityError:
            continue
    return InProgress()


# At most this many records go in one purge: a backlog (records were once never purged)
# is deleted a chunk per claim, each a short transaction, rather than in one long one.
PURGE_CHUNK = 1000


def purge_expired(database: Database, *, before: datetime) -> int:
    """Deletes up to PURGE_CHUNK of the records created before `before`, oldest first;
    returns how many it deleted."""
    oldest = (
        select(col(IdempotentRequest.id))
        .where(col(IdempotentRequest.created_at) < before)
        .order_by(col(IdempotentRequest.created_at))
        .limit(PURGE_CHUNK)
    )
    with write_transaction(database) as session:
        purged = session.execute(
            delete(IdempotentRequest).where(col(IdempotentRequest.id).in_(oldest.scalar_subquery()))
        )
        return int(purged.rowcount)  # type: ignore[attr-defined]


def complete(
    database: Database,
    *,
    record_id: int,
    status: int,
    headers: list[list[str]],
    body: bytes,
    now: datetime,
) -> None:
    """Store the response to replay; a server error is forgotten so a retry runs again."""
    with write_transaction(database) as session:
        if status >= 500:
            session.execute(delete(IdempotentRequest).where(col(IdempotentRequest.id) == record_id))
            return
        record = session.get(IdempotentRequest, record_id)
        if record is None:
            return
        record.status = status
        record.headers = headers
        record.body = body
        record.completed_at = now
        session.add(record)


def forget(database: Database, *, record_id: int) -> None:
    with write_transaction(database) as session:
        session.execute(delete(IdempotentRequest).where(col(IdempotentRequest.id) == record_id))
