"""MLflow deliveries as MLflow 3 signs them (mlflow/webhooks/delivery.py), written out here
rather than taken from the app, so a mistake in the app's own scheme shows."""

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from tests.conftest import FakeClock

SECRET = "mlflow-webhook-secret-for-tests"
WEBHOOK = "/v1/integrations/mlflow/webhook"
MODEL = "claims-triage-model"
REF = f"mlflow:models/{MODEL}"


def mlflow_signature(secret: str, delivery_id: str, timestamp: str, payload: str) -> str:
    content = f"{delivery_id}.{timestamp}.{payload}".encode()
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass
class Delivery:
    body: str
    headers: dict[str, str]

    @property
    def delivery_id(self) -> str:
        return self.headers["X-MLflow-Delivery-Id"]


def delivery(
    *,
    now: datetime,
    data: dict[str, Any],
    entity: str = "model_version_alias",
    action: str = "created",
    secret: str = SECRET,
    delivery_id: str | None = None,
) -> Delivery:
    """A delivery as MLflow sends it: json.dumps of the envelope, its id, a Unix timestamp
    and the signature over the three."""
    body = json.dumps(
        {"entity": entity, "action": action, "timestamp": now.isoformat(), "data": data}
    )
    delivery_id = delivery_id or str(uuid.uuid4())
    timestamp = str(int(now.timestamp()))
    return Delivery(
        body=body,
        headers={
            "Content-Type": "application/json",
            "X-MLflow-Delivery-Id": delivery_id,
            "X-MLflow-Timestamp": timestamp,
            "X-MLflow-Signature": mlflow_signature(secret, delivery_id, timestamp, body),
        },
    )


def alias_data(alias: str = "champion", version: str = "3", name: str = MODEL) -> dict[str, str]:
    return {"name": name, "alias": alias, "version": version}


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"readiness_mlflow_webhook_secret": SECRET}


Send = Callable[..., Response]


@pytest.fixture
def send(client: TestClient, clock: FakeClock) -> Send:
    """Signs and posts a delivery now (by the test's clock); `delivery=` posts one as made."""

    def post(made: Delivery | None = None, **fields: Any) -> Response:
        if made is None:
            fields.setdefault("data", alias_data())
            made = delivery(now=clock.now, **fields)
        return client.post(WEBHOOK, content=made.body, headers=made.headers)

    return post
