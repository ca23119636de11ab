from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, text
from sqlmodel import Session, col

from app.auth.roles import Principal
from app.models import Event
from app.webhooks import outbox as webhook_outbox

# Any constant will do: it names the one lock that orders event appends on PostgreSQL.
_EVENT_ORDER_LOCK = 7_406_120_101
_TAKE_EVENT_ORDER_LOCK = text(f"SELECT pg_advisory_xact_lock({_EVENT_ORDER_LOCK})")
_APPEND = insert(Event).returning(col(Event.id))


class EventType(StrEnum):
    system_created = "system.created"
    system_updated = "system.updated"
    system_tier_changed = "system.tier_changed"
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


def append_many(session: Session, new: list[NewEvent]) -> None:
    """Append events, in order, in the caller's transaction. Call it last in a unit of work.

    Readers follow the feed by id, so ids must become visible in order. PostgreSQL hands
    out sequence values before commit, so concurrent writers could commit ids out of
    order and a follower would skip one; a transaction-scoped lock, taken here and held
    to commit, makes append order equal commit order. SQLite already has one writer.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_TAKE_EVENT_ORDER_LOCK)
    # Written at once on the session's connection, outside the ORM: every write appends
    # one, and nothing reads the row back in the same unit of work.
    result = connection.execute(
        _APPEND,
        [
            {
                "type": event.type.value,
                "system_key": event.system_key,
                **event.actor.columns(),
                "occurred_at": event.occurred_at,
                "data": event.data,
            }
            for event in new
        ],
    )
    # Appends take turns (above), so the ids of one append are consecutive, given in the
    # list's order; sorted, as RETURNING promises no order.
    ids = sorted(id for id in result.scalars() if id is not None)
    webhook_outbox.enqueue(
        connection,
        [
            webhook_outbox.Appended(id, event.type.value, event.system_key, event.occurred_at)
            for id, event in zip(ids, new, strict=True)
        ],
    )


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
