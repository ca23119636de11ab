from typing import Annotated

from fastapi import APIRouter, Body, Header, Request, Response, status

from app.auth.dependencies import Admin
from app.clock import Now
from app.config import Settings
from app.db import DatabaseDep, read_transaction, write_transaction
from app.models import WebhookDelivery, WebhookSubscription
from app.openapi_docs import NO_SECURITY, WEBHOOK_SIGNATURE_EXTENSION, errors
from app.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    IdPath,
    Limit,
    Page,
    decode_int_cursor,
    next_cursor_for,
)
from app.webhooks import envelope
from app.webhooks import service as webhooks_service
from app.webhooks.schemas import (
    DeliveryRead,
    ReadinessCloudEvent,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _read(subscription: WebhookSubscription) -> WebhookRead:
    return WebhookRead.model_validate(subscription, from_attributes=True)


def _delivery(delivery: WebhookDelivery) -> DeliveryRead:
    return DeliveryRead.model_validate(delivery, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Subscribe to events",
    description=(
        "Every event committed from now on that matches `event_types` is POSTed to `url` as a"
        " CloudEvents 1.0 JSON envelope, signed per Standard Webhooks with the returned"
        " `secret`, which is in this response only. A URL whose host resolves to a private,"
        " loopback, link-local or metadata address is refused (422 `webhook-url-refused`)"
        " unless the service allows private addresses."
    ),
    responses=errors(400, 401, 403, 422),
)
def create_webhook(
    actor: Admin,
    body: WebhookCreate,
    request: Request,
    database: DatabaseDep,
    now: Now,
    response: Response,
) -> WebhookCreated:
    settings: Settings = request.app.state.settings
    # Before the transaction: resolving the name may take a while.
    webhooks_service.check_destination(
        body.url.host or "",
        body.url.port or 443,
        allow_private=settings.readiness_webhook_allow_private,
    )
    with write_transaction(database) as session:
        subscription = webhooks_service.create_subscription(
            session,
            url=str(body.url),
            event_types=[t.value for t in body.event_types] if body.event_types else None,
            description=body.description,
            actor=actor,
            now=now,
        )
    response.headers["Location"] = f"/v1/webhooks/{subscription.id}"
    return WebhookCreated(**_read(subscription).model_dump(), secret=subscription.secret)


@router.get(
    "",
    summary="List webhooks",
    description="Every subscription, oldest first, disabled ones included; never a secret.",
    responses=errors(400, 401, 403, 422),
)
def list_webhooks(
    _actor: Admin,
    database: DatabaseDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[WebhookRead]:
    after = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        rows = webhooks_service.list_subscriptions(session, after=after, limit=limit)
    return Page(
        items=[_read(row) for row in rows[:limit]],
        next_cursor=next_cursor_for(rows, limit, lambda row: row.id or 0),
    )


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook",
    description="Deletes the subscription and its deliveries: those still pending are not sent.",
    responses=errors(401, 403, 404, 422),
)
def delete_webhook(actor: Admin, webhook_id: IdPath, database: DatabaseDep, now: Now) -> None:
    with write_transaction(database) as session:
        webhooks_service.delete_subscription(
            session, subscription_id=webhook_id, actor=actor, now=now
        )


@router.get(
    "/{webhook_id}/deliveries",
    summary="List a webhook's deliveries",
    description="One per event sent or to send to the webhook, newest first, with its attempts.",
    responses=errors(400, 401, 403, 404, 422),
)
def list_webhook_deliveries(
    _actor: Admin,
    webhook_id: IdPath,
    database: DatabaseDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[DeliveryRead]:
    before = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        rows = webhooks_service.list_deliveries(
            session, subscription_id=webhook_id, before=before, limit=limit
        )
    return Page(
        items=[_delivery(row) for row in rows[:limit]],
        next_cursor=next_cursor_for(rows, limit, lambda row: row.id or 0),
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a delivery again",
    description=(
        "Makes the delivery due now, whatever its status, with a fresh retry window; it keeps"
        " its `webhook-id`. Later deliveries for the same system wait for it. 409 when the"
        " webhook was disabled by a 410."
    ),
    responses=errors(401, 403, 404, 409, 422),
)
def redeliver_webhook_delivery(
    actor: Admin, webhook_id: IdPath, delivery_id: IdPath, database: DatabaseDep, now: Now
) -> DeliveryRead:
    with write_transaction(database) as session:
        delivery = webhooks_service.redeliver(
            session, subscription_id=webhook_id, delivery_id=delivery_id, actor=actor, now=now
        )
    return _delivery(delivery)


# The deliveries this service sends, for the document's `webhooks` (OpenAPI 3.1): never
# served, only described.
deliveries_sent = APIRouter(tags=["webhooks"])


@deliveries_sent.post(
    "readinessEvent",
    operation_id="readinessEvent",
    response_class=Response,
    # No key: the receiver checks the signature in the headers below.
    openapi_extra={**NO_SECURITY, WEBHOOK_SIGNATURE_EXTENSION: "webhook-signature"},
    summary="An event pushed to a subscriber",
    description=(
        "POSTed to a subscription's URL for each matching event, as a CloudEvents 1.0 JSON"
        " envelope (`Content-Type: application/cloudevents+json`), signed per Standard"
        " Webhooks. Any 2xx answers it; no answer, 408, 429 and 5xx are retried with growing"
        " delays for at least 24 hours; 410 disables the subscription; any other status fails"
        " it at once."
    ),
    responses={
        200: {"description": "Received; any 2xx will do."},
        410: {"description": "The receiver is gone: the subscription is disabled."},
        429: {"description": "Retried later, no sooner than `Retry-After` seconds."},
        503: {"description": "Retried later, no sooner than `Retry-After` seconds."},
    },
)
def readiness_event(
    body: Annotated[ReadinessCloudEvent, Body(media_type=envelope.CONTENT_TYPE)],
    webhook_id: Annotated[
        str,
        Header(
            alias="webhook-id",
            max_length=40,
            description="The delivery's id, the same on every attempt of it.",
        ),
    ],
    webhook_timestamp: Annotated[
        str,
        Header(
            alias="webhook-timestamp",
            max_length=20,
            description="When this attempt was signed, in Unix seconds.",
        ),
    ],
    webhook_signature: Annotated[
        str,
        Header(
            alias="webhook-signature",
            max_length=200,
            description="`v1,` and the base64 HMAC-SHA256 of"
            " `{webhook-id}.{webhook-timestamp}.{body}` under the subscription's secret.",
        ),
    ],
) -> None:
    """Documentation only: the service sends this request, it does not serve it."""
