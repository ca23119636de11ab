from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import ADMIN_SECRET, auth


def test_admin_creates_a_key_whose_secret_is_shown_once(
    client: TestClient, admin: dict[str, str]
) -> None:
    created = client.post("/v1/api-keys", json={"name": "ci", "role": "pipeline"}, headers=admin)
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("rdy_")
    assert {"id", "name", "role", "created_at"} <= body.keys()
    assert created.headers["location"] == f"/v1/api-keys/{body['id']}"

    listed = client.get("/v1/api-keys", headers=admin).json()
    assert [item["name"] for item in listed["items"]] == ["bootstrap-admin", "ci"]
    assert all("key" not in item for item in listed["items"])
    assert body["key"] not in str(listed)


def test_the_new_key_works_with_its_role(client: TestClient, admin: dict[str, str]) -> None:
    secret = client.post(
        "/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=admin
    ).json()["key"]
    assert client.get("/v1/controls", headers=auth(secret)).status_code == 200
    denied = client.post("/v1/api-keys", json={"name": "x", "role": "viewer"}, headers=auth(secret))
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json()["type"].endswith("/forbidden")


def test_missing_or_unknown_key_is_401_problem(client: TestClient) -> None:
    for headers in ({}, auth("rdy_not_a_key"), {"Authorization": "Basic abc"}):
        response = client.get("/v1/controls", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["type"].endswith("/unauthorized")


def test_revoked_key_gets_401_at_once(client: TestClient, admin: dict[str, str]) -> None:
    created = client.post(
        "/v1/api-keys", json={"name": "p", "role": "pipeline"}, headers=admin
    ).json()
    assert client.get("/v1/controls", headers=auth(created["key"])).status_code == 200
    assert client.delete(f"/v1/api-keys/{created['id']}", headers=admin).status_code == 204
    assert client.get("/v1/controls", headers=auth(created["key"])).status_code == 401
    listed = client.get("/v1/api-keys", headers=admin).json()["items"]
    assert next(item for item in listed if item["id"] == created["id"])["revoked_at"] is not None


def test_revoking_an_unknown_key_is_404(client: TestClient, admin: dict[str, str]) -> None:
    response = client.delete("/v1/api-keys/9999", headers=admin)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def _last_used(client: TestClient, admin: dict[str, str], key: dict[str, Any]) -> str | None:
    """The key's last_used_at as the admin's key listing shows it."""
    listed = client.get("/v1/api-keys", headers=admin).json()["items"]
    return next(item for item in listed if item["id"] == key["id"])["last_used_at"]  # type: ignore[no-any-return]


def test_last_used_at_is_recorded(client: TestClient, admin: dict[str, str], clock) -> None:  # type: ignore[no-untyped-def]
    created = client.post(
        "/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=admin
    ).json()
    assert created["last_used_at"] is None
    client.get("/v1/controls", headers=auth(created["key"]))
    assert _last_used(client, admin, created) == clock.now.isoformat().replace("+00:00", "Z")


def test_readiness_read_marks_key_used(client: TestClient, admin: dict[str, str], clock) -> None:  # type: ignore[no-untyped-def]
    # The readiness read checks its key on its own connection and refreshes last_used_at
    # after answering (a write it keeps off the event loop), at most once a minute.
    created = client.post(
        "/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=admin
    ).json()

    # The system does not exist: the key is still checked (and used) before the 404.
    assert client.get("/v1/systems/nope/readiness", headers=auth(created["key"])).status_code == 404
    first = clock.now.isoformat().replace("+00:00", "Z")
    assert _last_used(client, admin, created) == first
    clock.advance(seconds=30)
    client.get("/v1/systems/nope/readiness", headers=auth(created["key"]))
    assert _last_used(client, admin, created) == first  # within the minute: no write
    clock.advance(seconds=31)
    client.get("/v1/systems/nope/readiness", headers=auth(created["key"]))
    assert _last_used(client, admin, created) == clock.now.isoformat().replace("+00:00", "Z")


def test_a_refused_request_still_marks_its_key_used(  # type: ignore[no-untyped-def]
    client: TestClient, admin: dict[str, str], clock
) -> None:
    # A valid key without the role (403) was used all the same: on a write and on a read.
    created = client.post(
        "/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=admin
    ).json()

    refused = client.put(
        "/v1/systems/nope/evidence/monitoring",
        json={"status": "met", "summary": "x"},
        headers=auth(created["key"]),
    )
    assert refused.status_code == 403
    assert _last_used(client, admin, created) == clock.now.isoformat().replace("+00:00", "Z")

    clock.advance(minutes=2)
    assert client.get("/v1/api-keys", headers=auth(created["key"])).status_code == 403
    assert _last_used(client, admin, created) == clock.now.isoformat().replace("+00:00", "Z")


def test_bootstrap_key_is_an_admin_and_not_duplicated(app, admin: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    # A second start-up with the same secret must not create a second key.
    with TestClient(app) as again:
        keys = again.get("/v1/api-keys", headers=auth(ADMIN_SECRET)).json()["items"]
    assert [(key["name"], key["role"]) for key in keys] == [("bootstrap-admin", "admin")]


def test_role_ladder(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    body = {"name": "x", "role": "viewer"}
    expected = {"viewer": 403, "pipeline": 403, "approver": 403, "admin": 201}
    for role, status in expected.items():
        assert client.post("/v1/api-keys", json=body, headers=keys[role]).status_code == status
    # every role may read
    for role in expected:
        assert client.get("/v1/controls", headers=keys[role]).status_code == 200


def test_invalid_role_and_unknown_fields_are_422(client: TestClient, admin: dict[str, str]) -> None:
    bad_role = client.post("/v1/api-keys", json={"name": "x", "role": "root"}, headers=admin)
    assert bad_role.status_code == 422
    assert [error["field"] for error in bad_role.json()["errors"]] == ["role"]
    extra = client.post(
        "/v1/api-keys", json={"name": "x", "role": "viewer", "id": 5}, headers=admin
    )
    assert extra.status_code == 422
