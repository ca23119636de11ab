"""MLflow's webhook signature, checked before anything of a delivery is read.

MLflow 3 (`mlflow/webhooks/delivery.py`) signs each delivery with the webhook's secret:
`X-MLflow-Signature: v1,<base64 of HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>")>`,
where the delivery id and the Unix timestamp in seconds are sent as `X-MLflow-Delivery-Id`
and `X-MLflow-Timestamp` and the body is the request body exactly as sent. The timestamp is
signed too, so a captured delivery cannot be made fresh again; one outside the tolerance is
refused, and within it, a delivery id seen before is a replay (the service's table)."""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.errors import Unauthorized

SIGNATURE_HEADER = "X-MLflow-Signature"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
SIGNATURE_VERSION = "v1"
# A delivery signed longer ago than this (or as far ahead, a clock that runs fast) is refused.
TOLERANCE = timedelta(minutes=5)
MAX_DELIVERY_ID_LENGTH = 100


class InvalidSignature(Unauthorized):
    type = "invalid-signature"
    title = "The webhook delivery's signature does not verify"

    def headers(self) -> dict[str, str]:
        # A 401 names how to authenticate: here, by signing, not with a bearer key.
        return {"WWW-Authenticate": 'MLflow-Signature realm="mlflow-webhook"'}


@dataclass(frozen=True)
class SignedDelivery:
    delivery_id: str
    signed_at: datetime


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The `X-MLflow-Signature` value MLflow sends for this delivery."""
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(
    *,
    secret: str | None,
    delivery_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: datetime,
) -> SignedDelivery:
    """The delivery's id and signing time, or 401 `invalid-signature` saying why not."""
    if secret is None:
        raise InvalidSignature(
            "The MLflow webhook is not configured here (READINESS_MLFLOW_WEBHOOK_SECRET is"
            " unset), so no delivery can be verified."
        )
    if not delivery_id or not timestamp or not signature:
        raise InvalidSignature(
            f"A delivery carries {DELIVERY_ID_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER};"
            " give the webhook a secret in MLflow."
        )
    if len(delivery_id) > MAX_DELIVERY_ID_LENGTH:
        raise InvalidSignature(f"{DELIVERY_ID_HEADER} is longer than MLflow's ids.")
    expected = sign(secret, delivery_id, timestamp, body)
    # Several space-separated signatures may be sent (a sender rotating its secret): one
    # that matches is enough. Each is compared in constant time.
    offered = signature.split()
    if not any(hmac.compare_digest(expected.encode(), item.encode()) for item in offered):
        raise InvalidSignature(
            "The signature does not match this delivery and the configured secret."
        )
    # ASCII digits only: str.isdigit also takes other scripts' digits and superscripts, which
    # int() reads as a number or fails on (a 500); MLflow sends ASCII.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not a Unix time in seconds.")
    try:
        signed_at = datetime.fromtimestamp(int(timestamp), tz=now.tzinfo)
    except (OverflowError, OSError, ValueError) as exc:  # past the year 9999
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not a Unix time in seconds.") from exc
    if abs(now - signed_at) > TOLERANCE:
        raise InvalidSignature(
            f"The delivery was signed at {signed_at.isoformat()}, more than"
            f" {int(TOLERANCE.total_seconds() // 60)} minutes from now; it is refused."
        )
    return SignedDelivery(delivery_id=delivery_id, signed_at=signed_at)
