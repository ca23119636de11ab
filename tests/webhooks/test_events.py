"""Managing webhooks is recorded in the event log like any other change: who subscribed
which URL, who deleted a subscription, who sent a delivery again. Never the secret."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.factories import make_system
from tests.webhooks.conftest import deliveries, dispatch, subscribe
from tests.webhooks.receiver import Receiver

Headers = dict[str, str]


def _events(client: TestClient, admin: Headers, kind: str) -> list[dict[str, Any]]:
    response = client.get("/v1/events", params={"type": kind, "limit": 200}, headers=admin)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_creating_a_webhook_records_who_subscribed_what_and_never_the_secret(
    client: TestClient, admin: Headers
) -> None:
    created = subscribe(client, admin, "https://93.184.216.34/hook", event_types=["gate.checked"])
    (event,) = _events(client, admin, "webhook.created")
    assert event["data"] == {
        "id": created["id"],
        "url": "https://93.184.216.34/hook",
        "event_types": ["gate.checked"],
    }
    assert event["system_key"] is None
    # The bootstrap admin key made it.
    assert event["actor"]["kind"] == "api_key"
    assert (
        event["actor"]["id"] == client.get("/v1/api-keys", headers=admin).json()["items"][0]["id"]
    )
    feed = client.get("/v1/events", params={"limit": 200}, headers=admin).text
    assert created["secret"] not in feed


def test_deleting_and_redelivering_are_recorded_with_their_ids(
    app: FastAPI, client: TestClient, admin: Headers, hook: Receiver
) -> None:
    webhook = subscribe(client, admin, hook.url, event_types=["system.created"])
    make_system(client, admin)
    dispatch(app)
    (delivery,) = deliveries(client, admin, webhook["id"])
    redelivered = client.post(
        f"/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver", headers=admin
    )
    assert redelivered.status_code == 202, redelivered.text
    (event,) = _events(client, admin, "webhook.redelivered")
    assert event["data"] == {
        "webhook_id": webhook["id"],
        "delivery_id": delivery["id"],
        "event_id": delivery["event_id"],
    }
    assert event["actor"]["kind"] == "api_key"

    assert client.delete(f"/v1/webhooks/{webhook['id']}", headers=admin).status_code == 204
    (deleted,) = _events(client, admin, "webhook.deleted")
    assert deleted["data"] == {"id": webhook["id"]}
    assert deleted["actor"] == event["actor"]


def test_the_chain_still_verifies_after_webhook_events(
    app: FastAPI, client: TestClient, admin: Headers, hook: Receiver
) -> None:
    webhook = subscribe(client, admin, hook.url)
    make_system(client, admin)
    dispatch(app)
    assert client.delete(f"/v1/webhooks/{webhook['id']}", headers=admin).status_code == 204
    verification = client.get("/v1/audit/verify", headers=admin).json()
    assert verification["ok"] is True, verification


def test_webhook_events_are_delivered_to_other_subscribers_not_to_the_new_one(
    app: FastAPI, client: TestClient, admin: Headers, hook: Receiver
) -> None:
    watcher = subscribe(client, admin, hook.url, event_types=["webhook.created", "webhook.deleted"])
    other = subscribe(client, admin, "https://93.184.216.34/hook")
    assert client.delete(f"/v1/webhooks/{other['id']}", headers=admin).status_code == 204
    dispatch(app)
    # The watcher's own creation is not sent to it; the other's creation and deletion are.
    types = [request.json()["type"] for request in hook.requests]
    assert types == ["dev.readiness.webhook.created", "dev.readiness.webhook.deleted"]
    assert hook.requests[0].json()["data"]["id"] == other["id"]
    assert [d["status"] for d in deliveries(client, admin, watcher["id"])] == [
        "succeeded",
        "succeeded",
    ]
