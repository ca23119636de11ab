"""The subscriptions API: create, list, delete, deliveries, redeliver; who may; what is refused."""

import base64
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.factories import make_system
from tests.webhooks.conftest import deliveries, dispatch, subscribe
from tests.webhooks.receiver import Receiver

PUBLIC_URL = "https://93.184.216.34/hooks/readiness"


def test_create_returns_the_secret_once(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post(
        "/v1/webhooks",
        json={"url": PUBLIC_URL, "event_types": ["gate.checked"], "description": "Dashboard"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["Location"] == f"/v1/webhooks/{created['id']}"
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    assert created | {"id": 0, "secret": ""} == {
        "id": 0,
        "url": PUBLIC_URL,
        "event_types": ["gate.checked"],
        "description": "Dashboard",
        "created_at": "2026-03-02T09:00:00Z",
        "disabled_at": None,
        "secret": "",
    }
    listed = client.get("/v1/webhooks", headers=admin).json()
    assert listed["items"] == [{k: v for k, v in created.items() if k != "secret"}]
    assert created["secret"] not in client.get("/v1/webhooks", headers=admin).text


def test_no_event_types_means_all(client: TestClient, admin: dict[str, str]) -> None:
    assert subscribe(client, admin, PUBLIC_URL)["event_types"] is None
    assert subscribe(client, admin, PUBLIC_URL, event_types=None)["event_types"] is None


def test_the_list_pages(client: TestClient, admin: dict[str, str]) -> None:
    ids = [subscribe(client, admin, f"{PUBLIC_URL}/{n}")["id"] for n in range(3)]
    first = client.get("/v1/webhooks?limit=2", headers=admin).json()
    assert [item["id"] for item in first["items"]] == ids[:2]
    rest = client.get(f"/v1/webhooks?limit=2&cursor={first['next_cursor']}", headers=admin).json()
    assert [item["id"] for item in rest["items"]] == ids[2:]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": PUBLIC_URL, "event_types": ["system.exploded"]}, "event_types.0"),
        ({"url": PUBLIC_URL, "event_types": []}, "event_types"),
        ({"url": PUBLIC_URL, "event_types": ["gate.checked", "gate.checked"]}, "event_types"),
        ({"url": "ftp://93.184.216.34/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pass@93.184.216.34/x"}, "url"),
        ({"url": "https://93.184.216.34/x#frag"}, "url"),
        ({"url": "https://93.184.216.34/" + "x" * 2000}, "url"),
        ({"url": PUBLIC_URL, "description": "x" * 501}, "description"),
        ({"url": PUBLIC_URL, "secret": "whsec_mine"}, "secret"),
        ({}, "url"),
    ],
)
def test_bad_bodies_are_422(
    client: TestClient, admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/webhooks", json=body, headers=admin)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["type"] == "/problems/validation-error"
    assert field in [error["field"] for error in problem["errors"]]


@pytest.mark.parametrize(
    "app_settings",
    [{"readiness_webhook_allow_private": False, "readiness_webhook_dispatch": False}],
)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://224.0.0.1/hook",
        "http://does-not-resolve.invalid/hook",
    ],
)
def test_private_addresses_are_refused(client: TestClient, admin: dict[str, str], url: str) -> None:
    response = client.post("/v1/webhooks", json={"url": url}, headers=admin)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "/problems/webhook-url-refused"
    assert problem["errors"][0]["field"] == "url"
    assert client.get("/v1/webhooks", headers=admin).json()["items"] == []


@pytest.mark.parametrize(
    "app_settings",
    [{"readiness_webhook_allow_private": False, "readiness_webhook_dispatch": False}],
)
def test_a_public_address_is_taken(client: TestClient, admin: dict[str, str]) -> None:
    assert subscribe(client, admin, PUBLIC_URL)["url"] == PUBLIC_URL


def test_only_admins_manage_webhooks(
    client: TestClient, keys: dict[str, dict[str, str]], admin: dict[str, str]
) -> None:
    webhook = subscribe(client, admin, PUBLIC_URL)
    calls = [
        ("POST", "/v1/webhooks", {"url": PUBLIC_URL}),
        ("GET", "/v1/webhooks", None),
        ("DELETE", f"/v1/webhooks/{webhook['id']}", None),
        ("GET", f"/v1/webhooks/{webhook['id']}/deliveries", None),
        ("POST", f"/v1/webhooks/{webhook['id']}/deliveries/1/redeliver", None),
    ]
    for method, path, body in calls:
        assert client.request(method, path, json=body).status_code == 401
        for role in ("viewer", "pipeline", "approver"):
            response = client.request(method, path, json=body, headers=keys[role])
            assert response.status_code == 403, (method, path, role)
            assert response.json()["required_role"] == "admin"


def test_unknown_ids_are_404(client: TestClient, admin: dict[str, str]) -> None:
    for method, path in [
        ("DELETE", "/v1/webhooks/99"),
        ("GET", "/v1/webhooks/99/deliveries"),
        ("POST", "/v1/webhooks/99/deliveries/1/redeliver"),
    ]:
        response = client.request(method, path, headers=admin)
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "/problems/not-found"
    webhook = subscribe(client, admin, PUBLIC_URL)
    response = client.post(f"/v1/webhooks/{webhook['id']}/deliveries/7/redeliver", headers=admin)
    assert response.status_code == 404
    assert client.delete("/v1/webhooks/0", headers=admin).status_code == 422
    assert client.get("/v1/webhooks/x/deliveries", headers=admin).status_code == 422
    response = client.get(f"/v1/webhooks/{webhook['id']}/deliveries?cursor=nope", headers=admin)
    assert response.json()["type"] == "/problems/invalid-cursor"


def test_deliveries_newest_first_in_pages(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver
) -> None:
    webhook = subscribe(client, admin, hook.url, event_types=["system.created"])
    for n in range(5):
        make_system(client, admin, key=f"system-{n}")
    events = client.get("/v1/events?type=system.created", headers=admin).json()["items"]
    newest_first = [event["id"] for event in reversed(events)]
    path = f"/v1/webhooks/{webhook['id']}/deliveries"
    page = client.get(f"{path}?limit=2", headers=admin).json()
    seen = [item["event_id"] for item in page["items"]]
    while page["next_cursor"]:
        page = client.get(f"{path}?limit=2&cursor={page['next_cursor']}", headers=admin).json()
        seen += [item["event_id"] for item in page["items"]]
    assert seen == newest_first
    assert {d["status"] for d in deliveries(client, admin, webhook["id"])} == {"pending"}
    assert dispatch(app) == 5
    assert {d["status"] for d in deliveries(client, admin, webhook["id"])} == {"succeeded"}


def test_redeliver_sends_it_again_with_the_same_id(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver
) -> None:
    # system.created only: the redelivery's own event (webhook.redelivered) is not its to get.
    webhook = subscribe(client, admin, hook.url, event_types=["system.created"])
    make_system(client, admin)
    dispatch(app)
    (delivery,) = deliveries(client, admin, webhook["id"])
    response = client.post(
        f"/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver", headers=admin
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    assert response.json()["next_attempt_at"] == "2026-03-02T09:00:00Z"
    assert dispatch(app) == 1
    first, second = hook.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    (again,) = deliveries(client, admin, webhook["id"])
    assert (again["status"], again["attempt"]) == ("succeeded", 2)

    other = subscribe(client, admin, hook.url)
    response = client.post(
        f"/v1/webhooks/{other['id']}/deliveries/{delivery['id']}/redeliver", headers=admin
    )
    assert response.status_code == 404


def test_redeliver_on_a_disabled_webhook_is_409(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver
) -> None:
    hook.statuses = [410]
    webhook = subscribe(client, admin, hook.url)
    make_system(client, admin)
    dispatch(app)
    (delivery,) = deliveries(client, admin, webhook["id"])
    response = client.post(
        f"/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver", headers=admin
    )
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/conflict"


def test_a_deleted_webhook_gets_nothing_more(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook: Receiver
) -> None:
    webhook = subscribe(client, admin, hook.url)
    kept = subscribe(client, admin, hook.url + "?kept")
    make_system(client, admin)
    assert client.delete(f"/v1/webhooks/{webhook['id']}", headers=admin).status_code == 204
    assert client.delete(f"/v1/webhooks/{webhook['id']}", headers=admin).status_code == 404
    # The kept one gets the system's creation and the other's deletion.
    assert dispatch(app) == 2
    assert [request.path for request in hook.requests] == ["/hook?kept", "/hook?kept"]
    assert [item["id"] for item in client.get("/v1/webhooks", headers=admin).json()["items"]] == [
        kept["id"]
    ]


def test_no_subscription_no_deliveries(
    app: FastAPI, client: TestClient, admin: dict[str, str]
) -> None:
    make_system(client, admin)
    assert dispatch(app) == 0


def test_a_secret_is_never_stored_for_replay(client: TestClient, admin: dict[str, str]) -> None:
    once = {**admin, "Idempotency-Key": "make-webhook"}
    first = client.post("/v1/webhooks", json={"url": PUBLIC_URL}, headers=once)
    second = client.post("/v1/webhooks", json={"url": PUBLIC_URL}, headers=once)
    assert first.json()["secret"] != second.json()["secret"]
    assert "idempotent-replayed" not in second.headers
