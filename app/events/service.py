from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text
from sqlmodel import Session, col

from app.audit import chain
from app.auth.roles import Principal
from app.models import Event
from app.webhooks import outbox as webhook_outbox

# Any constant will do: it names the one lock that orders event appends on PostgreSQL.
_EVENT_ORDER_LOCK = 7_406_120_101
_TAKE_EVENT_ORDER_LOCK = text(f"SELECT pg_advisory_xact_lock({_EVENT_ORDER_LOCK})")
# The chain's head and the new events' ids in one round trip, once the lock is held.
_HEAD_AND_IDS = text(
    "SELECT (SELECT hash FROM events ORDER BY id DESC LIMIT 1),"
    " nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, :count)"
).bindparams(bindparam("count"))
_HEAD = select(col(Event.id), col(Event.hash)).order_by(col(Event.id).desc()).limit(1)
_APPEND = insert(Event)


class EventType(StrEnum):
    system_created = "system.created"
    system_updated = "system.updated"
    system_tier_changed = "system.tier_changed"
    system_classification_confirmed = "system.classification_confirmed"
    evidence_recorded = "evidence.recorded"
    pilot_created = "pilot.created"
    pilot_result_recorded = "pilot.result_recorded"
    pilot_concluded = "pilot.concluded"
    gate_checked = "gate.checked"
    transition_recorded = "transition.recorded"
    approval_recorded = "approval.recorded"
    waiver_granted = "waiver.granted"
    waiver_revoked = "waiver.revoked"
    policy_published = "policy.published"
    api_key_created = "api_key.created"
    api_key_revoked = "api_key.revoked"
    mlflow_alias_denied = "integration.mlflow.alias_denied"
    readiness_changed = "readiness.changed"
    system_drifted = "system.drifted"
    webhook_created = "webhook.created"
    webhook_deleted = "webhook.deleted"
    webhook_redelivered = "webhook.redelivered"


@dataclass(frozen=True)
class NewEvent:
    type: EventType
    actor: Principal
    occurred_at: datetime
    data: dict[str, Any]
    system_key: str | None = None


def append(
    session: Session,
    *,
    type: EventType,
    actor: Principal,
    now: datetime,
    data: dict[str, Any],
    system_key: str | None = None,
) -> None:
    """Append an event in the caller's transaction. Call it last in a unit of work."""
    append_many(session, [NewEvent(type, actor, now, data, system_key)])


def append_many(session: Session, new: list[NewEvent]) -> list[int]:
    """Append events, in order, in the caller's transaction, and return their ids. Call it
    last in a unit of work.

    Readers follow the feed by id, so ids must become visible in order. PostgreSQL hands
    out sequence values before commit, so concurrent writers could commit ids out of
    order and a follower would skip one; a transaction-scoped lock, taken here and held
    to commit, makes append order equal commit order. SQLite already has one writer.
    The same order keeps the hash chain linear: each event links to the head it read.
    """
    connection = session.connection()
    head, ids = _claim_positions(connection, len(new))
    rows = []
    for event_id, event in zip(ids, new, strict=True):
        row = {
            "id": event_id,
            "type": event.type.value,
            "system_key": event.system_key,
            **event.actor.columns(),
            "occurred_at": event.occurred_at,
            "data": event.data,
            "prev_hash": head,
        }
        row["hash"] = head = chain.link(head, row)
        rows.append(row)
    # Written at once on the session's connection, outside the ORM: every write appends
    # one, and nothing reads the row back in the same unit of work.
    connection.execute(_APPEND, rows)
    webhook_outbox.enqueue(
        connection,
        [
            webhook_outbox.Appended(event_id, event.type.value, event.system_key, event.occurred_at)
            for event_id, event in zip(ids, new, strict=True)
        ],
    )
    return ids


def _claim_positions(connection: Connection, count: int) -> tuple[str, list[int]]:
    """The hash of the newest event (the chain's head) and the ids of `count` new events,
    in a transaction that writes them next: on PostgreSQL by taking the order lock, on
    SQLite because the transaction already holds the one write lock."""
    if connection.dialect.name == "postgresql":
        connection.execute(_TAKE_EVENT_ORDER_LOCK)
        claimed = connection.execute(_HEAD_AND_IDS, {"count": count}).all()
        return claimed[0][0] or chain.GENESIS, sorted(id for _, id in claimed)
    last_id, head = chain_head(connection)
    return head, list(range(last_id + 1, last_id + 1 + count))


def chain_head(connection: Connection) -> tuple[int, str]:
    """The newest event's id and hash; 0 and the genesis hash while the log is empty."""
    newest = connection.execute(_HEAD).first()
    if newest is None:
        return 0, chain.GENESIS
    return newest[0] or 0, newest[1]


def list_events(
    session: Session,
    *,
    after: int | None,
    type: EventType | None,
    system_key: str | None,
    limit: int,
) -> list[Event]:
    query = select(Event).order_by(col(Event.id)).limit(limit)
    if after is not None:
        query = query.where(col(Event.id) > after)
    if type is not None:
        query = query.where(col(Event.type) == type.value)
    if system_key is not None:
        query = query.where(col(Event.system_key) == system_key)
    return list(session.execute(query).scalars())
