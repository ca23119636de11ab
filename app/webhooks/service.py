"""Webhook subscriptions and their deliveries, as the API manages them."""

import base64
import secrets
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlmodel import Session, col

from app.auth.roles import Principal
from app.errors import Conflict, NotFound, WebhookUrlRefused
from app.events import service as events
from app.events.service import EventType
from app.models import WebhookDelivery, WebhookSubscription
from app.webhooks import ssrf
from app.webhooks.outbox import FAILED, PENDING

SECRET_PREFIX = "whsec_"
# Standard Webhooks asks for 24 to 64 random bytes.
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_destination(host: str, port: int, *, allow_private: bool) -> None:
    """422 `webhook-url-refused` unless `host` resolves to public addresses only (or private
    ones are allowed). Resolves the name: call it outside any transaction."""
    if allow_private:
        return
    try:
        ssrf.public_addresses(host, port)
    except ssrf.UnsafeAddress as exc:
        raise WebhookUrlRefused(
            f"Webhooks are sent to public addresses only: {exc}.",
            # The default code, "invalid": a rule of the world (where the name resolves) that
            # no schema can state.
            errors=[{"field": "url", "message": str(exc)}],
        ) from exc


def create_subscription(
    session: Session,
    *,
    url: str,
    event_types: list[str] | None,
    description: str | None,
    actor: Principal,
    now: datetime,
) -> WebhookSubscription:
    subscription = WebhookSubscription(
        url=url,
        event_types=event_types,
        description=description,
        secret=new_secret(),
        created_at=now,
        created_by=actor.key_id,
    )
    session.add(subscription)
    session.flush()
    # Never the secret: the event log is readable by every viewer.
    events.append(
        session,
        type=EventType.webhook_created,
        actor=actor,
        now=now,
        data={"id": subscription.id, "url": url, "event_types": event_types},
    )
    # A subscription receives what is committed after it: its own creation goes to the
    # others that match, not to itself.
    session.execute(
        delete(WebhookDelivery).where(col(WebhookDelivery.subscription_id) == subscription.id)
    )
    return subscription


def list_subscriptions(
    session: Session, *, after: int | None, limit: int
) -> list[WebhookSubscription]:
    query = select(WebhookSubscription).order_by(col(WebhookSubscription.id)).limit(limit + 1)
    if after is not None:
        query = query.where(col(WebhookSubscription.id) > after)
    return list(session.execute(query).scalars())


def get_subscription(session: Session, subscription_id: int) -> WebhookSubscription:
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None:
        raise NotFound(f"No webhook with id {subscription_id}.")
    return subscription


def delete_subscription(
    session: Session, *, subscription_id: int, actor: Principal, now: datetime
) -> None:
    """Deletes it and its deliveries (a cascade): those pending are never sent. One being sent
    at this moment may still arrive."""
    session.delete(get_subscription(session, subscription_id))
    session.flush()
    events.append(
        session,
        type=EventType.webhook_deleted,
        actor=actor,
        now=now,
        data={"id": subscription_id},
    )


def list_deliveries(
    session: Session, *, subscription_id: int, before: int | None, limit: int
) -> list[WebhookDelivery]:
    get_subscription(session, subscription_id)
    query = (
        select(WebhookDelivery)
        .where(col(WebhookDelivery.subscription_id) == subscription_id)
        .order_by(col(WebhookDelivery.id).desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(col(WebhookDelivery.id) < before)
    return list(session.execute(query).scalars())


def redeliver(
    session: Session, *, subscription_id: int, delivery_id: int, actor: Principal, now: datetime
) -> WebhookDelivery:
    """Due again now, with a fresh retry window; its attempts go on counting. A claim held by
    a dispatcher sending it now is left alone, so it is never sent twice at once."""
    subscription = get_subscription(session, subscription_id)
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.subscription_id != subscription_id:
        raise NotFound(f"Webhook {subscription_id} has no delivery with id {delivery_id}.")
    if subscription.disabled_at is not None:
        raise Conflict(
            f"Webhook {subscription_id} is disabled: its receiver answered 410 Gone. Create a"
            " new subscription to receive events again."
        )
    delivery.status = PENDING
    delivery.next_attempt_at = now
    delivery.retry_until = None
    session.add(delivery)
    session.flush()
    events.append(
        session,
        type=EventType.webhook_redelivered,
        actor=actor,
        now=now,
        data={
            "webhook_id": subscription_id,
            "delivery_id": delivery_id,
            "event_id": delivery.event_id,
        },
    )
    return delivery


def disable_subscription(session: Session, *, subscription_id: int, now: datetime) -> None:
    """Its receiver is gone (410): nothing more is sent, and what was pending fails."""
    session.execute(
        update(WebhookSubscription)
        .where(
            col(WebhookSubscription.id) == subscription_id,
            col(WebhookSubscription.disabled_at).is_(None),
        )
        .values(disabled_at=now)
    )
    session.execute(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.subscription_id) == subscription_id,
            col(WebhookDelivery.status) == PENDING,
        )
        .values(
            status=FAILED,
            next_attempt_at=None,
            last_error="not sent: the receiver answered 410 Gone and the webhook was disabled",
        )
    )
