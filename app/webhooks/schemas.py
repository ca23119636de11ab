from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints, field_validator

from app.events.service import EventType
from app.schemas import RequestModel

MAX_URL_LENGTH = 2000
MAX_EVENT_TYPES = len(EventType)

WebhookUrl = Annotated[
    AnyHttpUrl,
    UrlConstraints(max_length=MAX_URL_LENGTH, allowed_schemes=["http", "https"]),
    Field(
        description="Where deliveries are POSTed: http or https, without credentials, to a"
        " host that resolves to public addresses only (unless the service allows private"
        " ones)."
    ),
]


class DeliveryStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class WebhookCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/readiness",
                    "event_types": ["transition.recorded", "gate.checked"],
                    "description": "Deploy dashboard",
                }
            ]
        },
    )

    url: WebhookUrl
    event_types: list[EventType] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_EVENT_TYPES,
        json_schema_extra={"uniqueItems": True},
        description="The event types to deliver. Absent or null: every type, new ones too.",
    )
    description: str | None = Field(default=None, max_length=500)

    @field_validator("url")
    @classmethod
    def _plain_url(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        if url.username is not None or url.password is not None:
            raise ValueError("may not carry credentials; receivers check the signature")
        if url.fragment is not None:
            raise ValueError("may not have a fragment")
        return url

    @field_validator("event_types")
    @classmethod
    def _once_each(cls, types: list[EventType] | None) -> list[EventType] | None:
        if types is not None and len(set(types)) != len(types):
            raise ValueError("lists a type twice")
        return types


class WebhookRead(BaseModel):
    id: int
    url: str
    event_types: list[str] | None = Field(description="The event types delivered; null: all.")
    description: str | None
    created_at: datetime
    disabled_at: datetime | None = Field(
        description="When the receiver answered 410 Gone, which stops every delivery to it."
    )


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="The signing secret (`whsec_` and base64), as Standard Webhooks libraries"
        " take it. Shown only in this response; store it now."
    )


class DeliveryRead(BaseModel):
    id: int
    event_id: int
    attempt: int = Field(description="Attempts made so far.")
    status: DeliveryStatus
    response_status: int | None = Field(
        description="The HTTP status of the last attempt; null when it got no answer."
    )
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due; null once it succeeded or failed."
    )
    last_attempt_at: datetime | None
    last_error: str | None = Field(
        description="Why the last attempt failed, when no status says it (a timeout, a"
        " refused address, ...)."
    )
    created_at: datetime


class ReadinessCloudEvent(BaseModel):
    """What a webhook delivery's body holds (documented under the document's `webhooks`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "specversion": "1.0",
                    "id": "4711",
                    "source": "urn:readiness",
                    "type": "dev.readiness.evidence.recorded",
                    "time": "2026-03-02T09:00:00Z",
                    "subject": "claims-triage",
                    "datacontenttype": "application/json",
                    "actorkind": "api_key",
                    "actorname": "training-pipeline",
                    "data": {"control": "data_rules", "status": "met"},
                }
            ]
        }
    )

    specversion: str = Field(description="Always `1.0`.")
    id: str = Field(description="The event's id in `GET /v1/events`.")
    source: str = Field(description="READINESS_WEBHOOK_SOURCE: names the deployment.")
    type: str = Field(description="`dev.readiness.` and the event's type.")
    time: datetime = Field(description="When the event happened.")
    subject: str | None = Field(
        default=None, description="The system's key; absent for events of no system."
    )
    datacontenttype: str = Field(description="Always `application/json`.")
    actorkind: str = Field(description="Who caused it: the kind of the feed's `actor`.")
    actorname: str = Field(description="Who caused it: the name of the feed's `actor`.")
    data: dict[str, Any] = Field(description="The event's `data`, as the feed gives it.")
