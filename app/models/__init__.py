"""Every table model, imported here so metadata (and Alembic) sees them all."""

from app.models.api_key import ApiKey
from app.models.audit import AuditPublicKey
from app.models.base import UTCDateTime
from app.models.event import Event
from app.models.evidence import Evidence
from app.models.idempotency import IdempotentRequest
from app.models.integration import MlflowAlias, MlflowDelivery
from app.models.lifecycle import (
    Approval,
    ClassificationConfirmation,
    GateCheck,
    Transition,
    Waiver,
)
from app.models.pilot import Pilot, PilotResult
from app.models.policy import Policy
from app.models.readiness import ReadinessBlocker, ReadinessSnapshot
from app.models.system import System, SystemLabel
from app.models.webhook import WebhookDelivery, WebhookSubscription

__all__ = [
    "ApiKey",
    "Approval",
    "AuditPublicKey",
    "ClassificationConfirmation",
    "Event",
    "Evidence",
    "GateCheck",
    "IdempotentRequest",
    "MlflowAlias",
    "MlflowDelivery",
    "Pilot",
    "PilotResult",
    "Policy",
    "ReadinessBlocker",
    "ReadinessSnapshot",
    "System",
    "SystemLabel",
    "Transition",
    "UTCDateTime",
    "Waiver",
    "WebhookDelivery",
    "WebhookSubscription",
]
