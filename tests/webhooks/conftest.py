from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.webhooks.receiver import Receiver, receiver


@pytest.fixture
def app_settings() -> dict[str, Any]:
    # Receivers listen on loopback. The tests send by calling the dispatcher themselves,
    # between moves of the clock, rather than racing its thread.
    return {"readiness_webhook_allow_private": True, "readiness_webhook_dispatch": False}


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


def subscribe(client: TestClient, admin: dict[str, str], url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/webhooks", json={"url": url, **fields}, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def dispatch(app: FastAPI) -> int:
    """Sends everything due now, round after round; how many attempts were made."""
    sent = 0
    for _ in range(100):
        done = app.state.webhook_dispatcher.run_once()
        if not done:
            return sent
        sent += done
    raise AssertionError("the dispatcher never ran out of due deliveries")


def deliveries(client: TestClient, admin: dict[str, str], webhook_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/v1/webhooks/{webhook_id}/deliveries?limit=200", headers=admin)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
