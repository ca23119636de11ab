from fastapi.testclient import TestClient

from tests.factories import make_system, record_evidence


def test_every_write_appends_an_event_naming_the_actor(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    pipeline, admin = keys["pipeline"], keys["admin"]
    make_system(client, pipeline, key="sys-e")
    record_evidence(client, pipeline, key="sys-e", control="training")
    client.patch("/v1/systems/sys-e", json={"name": "Renamed"}, headers=pipeline)
    created = client.post(
        "/v1/api-keys", json={"name": "tmp", "role": "viewer"}, headers=admin
    ).json()
    client.delete(f"/v1/api-keys/{created['id']}", headers=admin)
    policy = client.get("/v1/policies/active", headers=admin).json()
    body = {key: policy[key] for key in ("tiers", "weights", "approval_validity_days")}
    client.post("/v1/policies", json=body, headers=admin)

    events = client.get("/v1/events", params={"limit": 200}, headers=keys["viewer"]).json()["items"]
    types = [event["type"] for event in events]
    # bootstrap key, the three role keys of the fixture, then this test's writes
    assert types == [
        "api_key.created",
        "api_key.created",
        "api_key.created",
        "api_key.created",
        "system.created",
        "evidence.recorded",
        "system.updated",
        "api_key.created",
        "api_key.revoked",
        "policy.published",
    ]
    assert events[0]["actor"] == {
        "kind": "service",
        "id": None,
        "name": "bootstrap",
        "issuer": None,
        "subject": None,
    }
    by_type = {event["type"]: event for event in events}
    assert by_type["system.created"]["actor"]["name"] == "pipeline-key"
    assert by_type["system.created"]["system_key"] == "sys-e"
    assert by_type["evidence.recorded"]["data"]["control"] == "training"
    assert by_type["system.updated"]["data"]["changes"] == {"name": "Renamed"}
    assert by_type["policy.published"]["actor"]["name"] == "bootstrap-admin"
    ids = [event["id"] for event in events]
    assert ids == sorted(ids)


def test_filters_and_cursor_following(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-a")
    make_system(client, pipeline, key="sys-b")
    record_evidence(client, pipeline, key="sys-a", control="training")

    only_a = client.get("/v1/events", params={"system": "sys-a"}, headers=viewer).json()["items"]
    assert [event["type"] for event in only_a] == ["system.created", "evidence.recorded"]
    created = client.get("/v1/events", params={"type": "system.created"}, headers=viewer).json()[
        "items"
    ]
    assert [event["system_key"] for event in created] == ["sys-a", "sys-b"]

    page = client.get("/v1/events", params={"system": "sys-a", "limit": 1}, headers=viewer).json()
    assert [event["type"] for event in page["items"]] == ["system.created"]
    rest = client.get(
        "/v1/events", params={"system": "sys-a", "after": page["next_cursor"]}, headers=viewer
    ).json()
    assert [event["type"] for event in rest["items"]] == ["evidence.recorded"]
    # A follower at the end keeps its position and sees the next event when it comes.
    tail = client.get(
        "/v1/events", params={"system": "sys-a", "after": rest["next_cursor"]}, headers=viewer
    ).json()
    assert tail["items"] == []
    assert tail["next_cursor"] == rest["next_cursor"]
    record_evidence(client, pipeline, key="sys-a", control="workflow")
    later = client.get(
        "/v1/events", params={"system": "sys-a", "after": tail["next_cursor"]}, headers=viewer
    ).json()
    assert [event["data"]["control"] for event in later["items"]] == ["workflow"]


def test_bad_event_queries(client: TestClient, viewer: dict[str, str]) -> None:
    assert client.get("/v1/events", params={"type": "nope"}, headers=viewer).status_code == 422
    assert client.get("/v1/events", params={"after": "%%%"}, headers=viewer).status_code == 400


def test_failed_writes_leave_no_event(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-a")
    before = client.get("/v1/events", params={"limit": 200}, headers=viewer).json()["items"]
    assert client.post("/v1/systems", json={"key": "sys-a"}, headers=pipeline).status_code == 422
    assert (
        client.patch(
            "/v1/systems/sys-a", json={"name": "x"}, headers={**pipeline, "If-Match": '"9"'}
        ).status_code
        == 412
    )
    after = client.get("/v1/events", params={"limit": 200}, headers=viewer).json()["items"]
    assert after == before


def test_events_cannot_be_changed_through_the_api(
    client: TestClient, admin: dict[str, str]
) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert client.request(method, "/v1/events", headers=admin).status_code == 405
