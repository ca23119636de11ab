"""Webhook URLs whose IPv6 address carries an IPv4 one (6to4, NAT64, Teredo, IPv4-mapped,
IPv4-compatible) are judged by that IPv4 address: a subscriber cannot reach the service's own
loopback or private network through a translation range the IPv6 checks take as public."""

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from tests.conftest import START
from tests.factories import make_system
from tests.webhooks.conftest import deliveries, dispatch

STRICT = {"readiness_webhook_allow_private": False, "readiness_webhook_dispatch": False}

# Per range, an address embedding a loopback or private IPv4 address, and which one.
EMBEDDING_PRIVATE = [
    ("6to4", "2002:7f00:1::", "127.0.0.1"),
    ("6to4", "2002:a00:1::1", "10.0.0.1"),
    ("6to4", "2002:a9fe:a9fe::", "169.254.169.254"),
    ("NAT64", "64:ff9b::7f00:1", "127.0.0.1"),
    ("NAT64", "64:ff9b::c0a8:1", "192.168.0.1"),
    ("NAT64 local-use", "64:ff9b:1::7f00:1", "127.0.0.1"),
    ("NAT64 local-use /48", "64:ff9b:1:a00:0:100::", "10.0.0.1"),
    # Teredo: the server is bits 32..63; the client the inverse of the last 32 bits.
    ("Teredo client", "2001:0:808:808::80ff:fffe", "127.0.0.1"),
    ("Teredo server", "2001:0:a00:1::f7f7:f7f7", "10.0.0.1"),
    ("IPv4-mapped", "::ffff:7f00:1", "127.0.0.1"),
    ("IPv4-compatible", "::7f00:1", "127.0.0.1"),
    ("IPv4-compatible", "::a00:1", "10.0.0.1"),
]
# Per range, an address embedding only public IPv4 addresses, which the checker takes.
EMBEDDING_PUBLIC = [
    ("6to4", "2002:808:808::1"),
    ("NAT64", "64:ff9b::808:808"),
    ("Teredo", "2001:0:808:808::f7f7:f7f7"),
    ("IPv4-mapped", "::ffff:808:808"),
]


def _create(client: TestClient, admin: dict[str, str], address: str) -> Any:
    return client.post("/v1/webhooks", json={"url": f"https://[{address}]/hook"}, headers=admin)


@pytest.mark.parametrize("app_settings", [STRICT])
@pytest.mark.parametrize(("kind", "address", "inner"), EMBEDDING_PRIVATE)
def test_an_address_embedding_a_private_ipv4_is_refused_at_creation(
    client: TestClient, admin: dict[str, str], kind: str, address: str, inner: str
) -> None:
    response = _create(client, admin, address)
    assert response.status_code == 422, f"{kind}: {response.text}"
    problem = response.json()
    assert problem["type"] == "/problems/webhook-url-refused"
    assert inner in problem["detail"]
    assert problem["errors"][0]["field"] == "url"
    assert client.get("/v1/webhooks", headers=admin).json()["items"] == []


@pytest.mark.parametrize("app_settings", [STRICT])
@pytest.mark.parametrize(("kind", "address"), EMBEDDING_PUBLIC)
def test_an_address_embedding_a_public_ipv4_is_taken(
    client: TestClient, admin: dict[str, str], kind: str, address: str
) -> None:
    response = _create(client, admin, address)
    assert response.status_code == 201, f"{kind}: {response.text}"


@pytest.mark.parametrize(
    "app_settings",
    [{"readiness_webhook_allow_private": True, "readiness_webhook_dispatch": False}],
)
def test_a_deployment_that_allows_private_addresses_takes_them_embedded_too(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert _create(client, admin, "2002:7f00:1::").status_code == 201


@pytest.mark.parametrize("app_settings", [STRICT])
@pytest.mark.parametrize(
    ("kind", "address", "inner"),
    [EMBEDDING_PRIVATE[0], EMBEDDING_PRIVATE[3], EMBEDDING_PRIVATE[7]],
)
def test_an_address_embedding_a_private_ipv4_is_refused_when_sending(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    engine: Engine,
    kind: str,
    address: str,
    inner: str,
) -> None:
    # Stored directly, as a subscription made before this rule (or under another setting)
    # would be: each attempt checks its address again.
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO webhook_subscriptions (url, secret, created_at)"
                " VALUES (:url, :secret, :now)"
            ),
            {
                "url": f"http://[{address}]:9/hook",
                "secret": "whsec_" + "A" * 43 + "=",
                "now": START,
            },
        )
        webhook_id = connection.execute(text("SELECT id FROM webhook_subscriptions")).scalar()
    make_system(client, admin)
    assert dispatch(app) == 1
    (delivery,) = deliveries(client, admin, int(webhook_id or 0))
    assert delivery["status"] == "failed", kind
    assert delivery["response_status"] is None
    assert inner in delivery["last_error"]
    assert delivery["last_error"].startswith("not sent")
