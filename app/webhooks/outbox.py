"""The outbox: a delivery row for each new event and each active subscription it matches,
written in the transaction that appends the event, so an event is pushed exactly when it is
committed (app.webhooks.dispatcher sends them)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select
from sqlmodel import col

from app.models import WebhookDelivery, WebhookSubscription

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"

_ACTIVE_SUBSCRIPTIONS = select(
    col(WebhookSubscription.id), col(WebhookSubscription.event_types)
).where(col(WebhookSubscription.disabled_at).is_(None))
_ADD = insert(WebhookDelivery)


@dataclass(frozen=True)
class Appended:
    """An event as the outbox needs it, once it has its id."""

    id: int
    type: str
    system_key: str | None
    occurred_at: datetime


def enqueue(connection: Connection, events: Sequence[Appended]) -> None:
    """Adds the deliveries of `events` in the caller's transaction. Every write appends an
    event: without subscriptions this costs one small query."""
    subscriptions = connection.execute(_ACTIVE_SUBSCRIPTIONS).all()
    if not subscriptions:
        return
    rows = [
        {
            "subscription_id": subscription_id,
            "event_id": event.id,
            "ordering_key": event.system_key or "",
            "status": PENDING,
            "attempt": 0,
            "next_attempt_at": event.occurred_at,
            "created_at": event.occurred_at,
        }
        for event in events
        for subscription_id, types in subscriptions
        if types is None or event.type in types
    ]
    if rows:
        connection.execute(_ADD, rows)
