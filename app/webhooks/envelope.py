"""What a delivery sends: the event as a CloudEvents 1.0 JSON envelope, and the Standard
Webhooks headers that sign it."""

from datetime import datetime
from math import floor
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from standardwebhooks import Webhook

from app.models import Event

TYPE_PREFIX = "dev.readiness."
CONTENT_TYPE = "application/cloudevents+json"
_FORMAT = JSONFormat()


def cloudevent(event: Event, *, source: str) -> bytes:
    """The envelope's JSON: `data` is the event's own data, as the feed gives it; the actor
    who caused it is in the extension attributes `actorkind` and `actorname`."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event.id),
        "source": source,
        "type": TYPE_PREFIX + event.type,
        "time": event.occurred_at,
        "datacontenttype": "application/json",
        "actorkind": event.actor_kind,
        "actorname": event.actor_name,
    }
    if event.system_key is not None:
        attributes["subject"] = event.system_key
    return _FORMAT.write(CloudEvent(attributes, event.data))


def webhook_id(delivery_id: int) -> str:
    """The same for every attempt of a delivery, so receivers can drop repeats."""
    return f"msg_{delivery_id}"


def signature_headers(
    *, secret: str, message_id: str, body: bytes, sent_at: datetime
) -> dict[str, str]:
    signature = Webhook(secret).sign(message_id, sent_at, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(floor(sent_at.timestamp())),
        "webhook-signature": signature,
    }
