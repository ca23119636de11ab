from datetime import datetime

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer
from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class WebhookSubscription(SQLModel, table=True):
    """A receiver of pushed events (app.webhooks)."""

    __tablename__ = "webhook_subscriptions"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    # The event types it receives; null: every type.
    event_types: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    description: str | None = Field(default=None, max_length=500)
    # `whsec_` and base64, as Standard Webhooks writes it. Kept as is: deliveries are signed
    # with it (an HMAC key, so a hash of it would not do).
    secret: str = Field(max_length=100)
    created_at: datetime = Field(sa_type=UTCDateTime)
    created_by: int | None = Field(default=None)
    # Set when a receiver answered 410 Gone: nothing more is sent to it.
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """One event to send to one subscription: the outbox row, written in the transaction that
    appends the event, and then the record of its attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The dispatcher's look for due deliveries.
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        # Order per system: is an earlier delivery of the same subscription and system pending?
        Index(
            "ix_webhook_deliveries_subscription_id_ordering_key_status_id",
            "subscription_id",
            "ordering_key",
            "status",
            "id",
        ),
        # A subscription's deliveries, newest first.
        Index("ix_webhook_deliveries_subscription_id_id", "subscription_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    # No foreign key: the event log is rewritten by nothing, and a migration that rebuilds
    # the events table (SQLite) must not have to mind this one.
    event_id: int
    # The event's system key, or '' for an event of no system: deliveries of one key go out
    # in event order.
    ordering_key: str = Field(max_length=63)
    # pending, succeeded or failed.
    status: str = Field(max_length=10)
    # Attempts made so far.
    attempt: int = Field(default=0)
    # When it is due next; null once it succeeded or failed.
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # After a failed attempt past this moment it is given up (set at its first failure).
    retry_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    response_status: int | None = Field(default=None)
    # Why the last attempt failed when there was no answer (refused address, timeout, ...).
    last_error: str | None = Field(default=None, max_length=500)
    # A dispatcher's claim: it is sending the delivery until then. A claim whose process died
    # expires and another takes the delivery.
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claim_token: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(sa_type=UTCDateTime)
