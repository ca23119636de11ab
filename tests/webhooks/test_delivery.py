"""Deliveries reach a real receiver: signed, enveloped, retried, in order per system."""

import base64
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from standardwebhooks import Webhook

from app.db import Database
from app.webhooks import dispatcher as webhook_dispatcher
from tests.conftest import START, FakeClock
from tests.factories import make_system
from tests.serving import free_port
from tests.webhooks.conftest import deliveries, dispatch, subscribe
from tests.webhooks.receiver import Receiver


def _events(client: TestClient, admin: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/events", params={"limit": 200, **query}, headers=admin)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_delivery_is_a_signed_cloudevent(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver
) -> None:
    webhook = subscribe(client, admin, hook.url, event_types=["system.created"])
    make_system(client, admin, key="claims-triage")
    assert dispatch(app) == 1

    (request,) = hook.requests
    # The receiver's side, as the docs show it: the library verifies the signature.
    Webhook(webhook["secret"]).verify(request.body, request.headers)
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert request.headers["webhook-id"].startswith("msg_")
    (event,) = _events(client, admin, type="system.created")
    envelope = request.json()
    assert envelope == {
        "specversion": "1.0",
        "id": str(event["id"]),
        "source": "urn:readiness",
        "type": "dev.readiness.system.created",
        "time": "2026-03-02T09:00:00Z",
        "subject": "claims-triage",
        "datacontenttype": "application/json",
        "actorkind": "api_key",
        "actorname": event["actor"]["name"],
        "data": event["data"],
    }
    (delivery,) = deliveries(client, admin, webhook["id"])
    assert delivery | {"id": 0, "created_at": None} == {
        "id": 0,
        "event_id": event["id"],
        "attempt": 1,
        "status": "succeeded",
        "response_status": 204,
        "next_attempt_at": None,
        "last_attempt_at": "2026-03-02T09:00:00Z",
        "last_error": None,
        "created_at": None,
    }


def test_a_tampered_body_does_not_verify(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver
) -> None:
    webhook = subscribe(client, admin, hook.url)
    make_system(client, admin)
    dispatch(app)
    request = hook.requests[0]
    secret = base64.b64decode(webhook["secret"].removeprefix("whsec_"))
    assert len(secret) == 32
    with pytest.raises(Exception, match="match"):
        Webhook(webhook["secret"]).verify(
            request.body.replace(b"claims", b"clams"), request.headers
        )


def test_503_503_then_200_is_one_message_sent_three_times(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver, clock: FakeClock
) -> None:
    hook.statuses = [503, 503, 200]
    webhook = subscribe(client, admin, hook.url)
    make_system(client, admin)
    assert dispatch(app) == 1
    (first,) = deliveries(client, admin, webhook["id"])
    assert first["status"] == "pending"
    assert first["attempt"] == 1
    assert first["response_status"] == 503
    # Backoff: 15 to 30 s after the first failure, not sooner.
    due = datetime.fromisoformat(first["next_attempt_at"])
    assert START + timedelta(seconds=15) <= due <= START + timedelta(seconds=30)
    assert dispatch(app) == 0

    clock.advance(seconds=31)
    assert dispatch(app) == 1
    (second,) = deliveries(client, admin, webhook["id"])
    assert (second["status"], second["attempt"]) == ("pending", 2)
    clock.advance(seconds=61)
    assert dispatch(app) == 1

    ids = [request.headers["webhook-id"] for request in hook.requests]
    assert len(ids) == 3
    assert len(set(ids)) == 1
    for request in hook.requests:
        Webhook(webhook["secret"]).verify(request.body, request.headers)
    (done,) = deliveries(client, admin, webhook["id"])
    assert (done["status"], done["attempt"], done["response_status"]) == ("succeeded", 3, 200)
    assert done["next_attempt_at"] is None


@pytest.mark.parametrize("status", [429, 500, 502, 504, 408])
def test_these_answers_are_retried(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver, status: int
) -> None:
    hook.statuses = [status]
    webhook = subscribe(client, admin, hook.url)
    make_system(client, admin)
    dispatch(app)
    (delivery,) = deliveries(client, admin, webhook["id"])
    assert (delivery["status"], delivery["response_status"]) == ("pending", status)


@pytest.mark.parametrize("status", [400, 401, 404, 301])
def test_other_answers_fail_at_once(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver, status: int
) -> None:
    hook.statuses = [status]
    webhook = subscribe(client, admin, hook.url)
    make_system(client, admin)
    dispatch(app)
    (delivery,) = deliveries(client, admin, webhook["id"])
    assert (delivery["status"], delivery["response_status"]) == ("failed", status)
    assert delivery["next_attempt_at"] is None


def test_a_receiver_that_never_answers_is_given_up_after_a_day(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver, clock: FakeClock
) -> None:
    hook.default = 503
    webhook = subscribe(client, admin, hook.url)
    make_system(client, admin)
    attempts = 0
    while clock.now < START + timedelta(hours=26):
        attempts += dispatch(app)
        clock.advance(minutes=30)
    (delivery,) = deliveries(client, admin, webhook["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempt"] == attempts
    last = clock.now - timedelta(minutes=30)
    # Tried for the whole day, at most an hour apart once the delays reached their cap.
    assert attempts > 24
    assert datetime.fromisoformat(delivery["last_attempt_at"]) >= START + timedelta(hours=24)
    assert last >= START + timedelta(hours=24)


def test_retry_after_is_followed(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver
) -> None:
    webhook = subscribe(client, admin, hook.url)
    hook.statuses = [429]
    hook.headers = {"Retry-After": "600"}
    make_system(client, admin)
    dispatch(app)
    (delivery,) = deliveries(client, admin, webhook["id"])
    assert delivery["status"] == "pending"
    assert delivery["next_attempt_at"] == "2026-03-02T09:10:00Z"


def test_410_disables_the_webhook(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver, clock: FakeClock
) -> None:
    hook.statuses = [410]
    webhook = subscribe(client, admin, hook.url)
    make_system(client, admin, key="one")
    make_system(client, admin, key="two")
    assert dispatch(app) == 2  # one per system: they do not wait for each other
    items = client.get("/v1/webhooks", headers=admin).json()["items"]
    assert items[0]["disabled_at"] == "2026-03-02T09:00:00Z"
    statuses = {d["status"] for d in deliveries(client, admin, webhook["id"])}
    assert statuses <= {"failed", "succeeded"}

    make_system(client, admin, key="three")
    clock.advance(hours=2)
    assert dispatch(app) == 0
    assert len(deliveries(client, admin, webhook["id"])) == 2  # none for the new event
    assert len(hook.requests) == 2


def test_events_of_one_system_arrive_in_order_after_an_outage(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    pipeline: dict[str, str],
    hook: Receiver,
    clock: FakeClock,
) -> None:
    webhook = subscribe(
        client, admin, hook.url, event_types=["system.created", "evidence.recorded"]
    )
    hook.default = 503  # down
    make_system(client, pipeline, key="alpha")
    make_system(client, pipeline, key="beta")
    for control in ("data_rules", "human_oversight", "monitoring"):
        response = client.put(
            f"/v1/systems/alpha/evidence/{control}",
            json={"status": "met", "summary": "Agreed"},
            headers=pipeline,
        )
        assert response.status_code == 200, response.text
    # Only the first event of each system is tried while the receiver is down.
    assert dispatch(app) == 2
    for _ in range(3):
        clock.advance(minutes=20)
        dispatch(app)
    assert {request.json()["subject"] for request in hook.requests} == {"alpha", "beta"}
    tried = [request.json()["id"] for request in hook.requests]
    first_alpha = next(r.json()["id"] for r in hook.requests if r.json()["subject"] == "alpha")
    assert all(
        request.json()["id"] == first_alpha
        for request in hook.requests
        if request.json()["subject"] == "alpha"
    ), tried

    hook.default = 204  # back after an hour
    clock.advance(hours=1)
    dispatch(app)
    alpha = [r.json()["id"] for r in hook.requests if r.json()["subject"] == "alpha"]
    expected = [str(e["id"]) for e in _events(client, admin, system="alpha")]
    # Retries of the first repeat it; after them every event once, in order.
    assert list(dict.fromkeys(alpha)) == expected
    assert {d["status"] for d in deliveries(client, admin, webhook["id"])} == {"succeeded"}


def test_only_the_subscribed_types_are_delivered(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver
) -> None:
    subscribe(client, admin, hook.url, event_types=["api_key.created"])
    make_system(client, admin)
    client.post("/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=admin)
    dispatch(app)
    assert [r.json()["type"] for r in hook.requests] == ["dev.readiness.api_key.created"]
    assert "subject" not in hook.requests[0].json()


@pytest.mark.parametrize(
    "app_settings",
    [{"readiness_webhook_allow_private": False, "readiness_webhook_dispatch": False}],
)
def test_an_address_that_became_private_is_refused_when_sending(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver, engine: Engine
) -> None:
    # A subscription made while its name resolved to a public address: stored directly, as
    # the API would refuse this URL now.
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO webhook_subscriptions (url, secret, created_at)"
                " VALUES (:url, :secret, :now)"
            ),
            {"url": hook.url, "secret": "whsec_" + "A" * 43 + "=", "now": START},
        )
        webhook_id = connection.execute(text("SELECT id FROM webhook_subscriptions")).scalar()
    make_system(client, admin)
    assert dispatch(app) == 1
    assert hook.requests == []
    (delivery,) = deliveries(client, admin, int(webhook_id or 0))
    assert delivery["status"] == "failed"
    assert delivery["response_status"] is None
    assert "127.0.0.1" in delivery["last_error"]
    assert "loopback" in delivery["last_error"]


def test_a_claim_whose_process_died_expires(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver, clock: FakeClock
) -> None:
    subscribe(client, admin, hook.url)
    make_system(client, admin)
    database: Database = app.state.database
    lease = timedelta(seconds=60)
    (claimed,) = webhook_dispatcher.claim(database, now=clock.now, lease=lease)
    # Its process dies here. Until the lease runs out nobody else takes it.
    assert webhook_dispatcher.claim(database, now=clock.now, lease=lease) == []
    assert dispatch(app) == 0
    clock.advance(seconds=61)
    assert dispatch(app) == 1
    assert [r.headers["webhook-id"] for r in hook.requests] == [f"msg_{claimed.delivery.id}"]


def test_a_receiver_that_is_not_listening_is_retried(
    app: FastAPI, client: TestClient, admin: dict[str, str]
) -> None:
    webhook = subscribe(client, admin, f"http://127.0.0.1:{free_port()}/hook")
    make_system(client, admin)
    assert dispatch(app) == 1
    (delivery,) = deliveries(client, admin, webhook["id"])
    assert (delivery["status"], delivery["attempt"]) == ("pending", 1)
    assert delivery["response_status"] is None
    assert delivery["last_error"].startswith("ConnectError")
