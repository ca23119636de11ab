from typing import Any

from fastapi.testclient import TestClient

from tests.factories import make_system, system_body


def test_create_returns_201_location_etag_and_derived_tier(
    client: TestClient, pipeline: dict[str, str]
) -> None:
    response = client.post(
        "/v1/systems",
        json=system_body(key="claims-triage", impact_areas=["money", "drafting"]),
        headers=pipeline,
    )
    assert response.status_code == 201
    assert response.headers["location"] == "/v1/systems/claims-triage"
    assert response.headers["etag"] == '"1"'
    body = response.json()
    assert body["stage"] == "proposed"
    assert body["risk_tier"] == "high"
    assert body["risk_tier_rule"]["rule"] == "impact_area"
    assert body["owner"] == {"team": "claims-platform", "contact": "claims@example.com"}
    assert {"created_at", "updated_at", "score", "level"} <= body.keys()


def test_duplicate_key_is_409(client: TestClient, pipeline: dict[str, str]) -> None:
    make_system(client, pipeline, key="dup-key")
    again = client.post("/v1/systems", json=system_body(key="dup-key"), headers=pipeline)
    assert again.status_code == 409
    assert again.json()["type"].endswith("/already-exists")


def test_create_needs_pipeline_role(client: TestClient, viewer: dict[str, str]) -> None:
    assert client.post("/v1/systems", json=system_body(), headers=viewer).status_code == 403


def test_create_validates_each_field(client: TestClient, pipeline: dict[str, str]) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"key": "Bad_Key"}, "key"),
        ({"key": "a"}, "key"),
        ({"impact_areas": []}, "impact_areas"),
        ({"impact_areas": ["money", "money"]}, "impact_areas"),
        ({"impact_areas": ["moon"]}, "impact_areas.0"),
        ({"oversight": "sometimes"}, "oversight"),
        ({"declared_risk_tier": "extreme"}, "declared_risk_tier"),
        ({"name": ""}, "name"),
        ({"owner": {"team": "x"}}, "owner.contact"),
        ({"stage": "production"}, "stage"),
        ({"risk_tier": "minimal"}, "risk_tier"),
        ({"id": 7}, "id"),
    ]
    for change, field in cases:
        response = client.post("/v1/systems", json=system_body(**change), headers=pipeline)
        assert response.status_code == 422, (change, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        fields = [error["field"] for error in response.json()["errors"]]
        assert field in fields, (change, fields)


def test_get_returns_system_with_etag_and_404_for_unknown(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-a")
    response = client.get("/v1/systems/sys-a", headers=viewer)
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    missing = client.get("/v1/systems/nope-nope", headers=viewer)
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("/not-found")


def test_tier_rules_fully_automated_and_declared(
    client: TestClient, pipeline: dict[str, str]
) -> None:
    bumped = make_system(
        client, pipeline, key="auto-bot", tier="limited", oversight="fully_automated"
    )
    assert (bumped["risk_tier"], bumped["risk_tier_rule"]["rule"]) == ("high", "fully_automated")
    declared = make_system(
        client, pipeline, key="declared", tier="minimal", declared_risk_tier="critical"
    )
    assert (declared["risk_tier"], declared["risk_tier_rule"]["rule"]) == (
        "critical",
        "declared_risk_tier",
    )
    not_lowered = make_system(
        client, pipeline, key="not-lower", tier="critical", declared_risk_tier="minimal"
    )
    assert (not_lowered["risk_tier"], not_lowered["risk_tier_rule"]["rule"]) == (
        "critical",
        "impact_area",
    )


def test_list_filters_and_paginates(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-1", tier="minimal", labels={"env": "prod"})
    make_system(client, pipeline, key="sys-2", tier="high", labels={"env": "dev"})
    make_system(
        client,
        pipeline,
        key="sys-3",
        tier="high",
        owner={"team": "other", "contact": "o@x"},
        labels={"env": "prod", "unit": "a"},
    )

    def keys(**params: Any) -> list[str]:
        response = client.get("/v1/systems", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        return [item["key"] for item in response.json()["items"]]

    assert keys() == ["sys-1", "sys-2", "sys-3"]
    assert keys(risk_tier="high") == ["sys-2", "sys-3"]
    assert keys(owner_team="other") == ["sys-3"]
    assert keys(label="env:prod") == ["sys-1", "sys-3"]
    assert keys(label=["env:prod", "unit:a"]) == ["sys-3"]
    assert keys(stage="proposed") == ["sys-1", "sys-2", "sys-3"]
    assert keys(stage="production") == []
    # Only the minimal-tier system has what its pilot gate needs (purpose, owner, scope).
    assert keys(ready_for="pilot") == ["sys-1"]
    assert keys(ready_for="production") == []

    first = client.get("/v1/systems", params={"limit": 2}, headers=viewer).json()
    assert [item["key"] for item in first["items"]] == ["sys-1", "sys-2"]
    second = client.get(
        "/v1/systems", params={"limit": 2, "cursor": first["next_cursor"]}, headers=viewer
    ).json()
    assert [item["key"] for item in second["items"]] == ["sys-3"]
    assert second["next_cursor"] is None


def test_list_rejects_bad_filters_and_cursors(client: TestClient, viewer: dict[str, str]) -> None:
    assert client.get("/v1/systems", params={"label": "novalue"}, headers=viewer).status_code == 422
    assert (
        client.get("/v1/systems", params={"risk_tier": "huge"}, headers=viewer).status_code == 422
    )
    assert client.get("/v1/systems", params={"limit": 0}, headers=viewer).status_code == 422
    assert client.get("/v1/systems", params={"limit": 201}, headers=viewer).status_code == 422
    for cursor in ("garbage!!", "eyJwIjoiYSJ9", "eyJwIjotMX0"):
        response = client.get("/v1/systems", params={"cursor": cursor}, headers=viewer)
        assert response.status_code == 400, cursor
        assert response.json()["type"].endswith("/invalid-cursor")


def test_merge_patch_updates_merges_and_clears(
    client: TestClient, pipeline: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-p", labels={"env": "dev", "unit": "a"})
    response = client.patch(
        "/v1/systems/sys-p",
        json={
            "scope": None,
            "owner": {"contact": "new@example.com"},
            "labels": {"env": None, "tier": "gold"},
        },
        headers={**pipeline, "Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] is None
    assert body["owner"] == {"team": "claims-platform", "contact": "new@example.com"}
    assert body["labels"] == {"unit": "a", "tier": "gold"}
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert body["name"] == "System sys-p"


def test_patch_changing_impact_areas_rederives_the_tier(
    client: TestClient, pipeline: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-t", tier="minimal")
    body = client.patch(
        "/v1/systems/sys-t", json={"impact_areas": ["safety"]}, headers=pipeline
    ).json()
    assert body["risk_tier"] == "critical"


def test_patch_if_match(client: TestClient, pipeline: dict[str, str]) -> None:
    make_system(client, pipeline, key="sys-m")
    stale = client.patch(
        "/v1/systems/sys-m", json={"name": "B"}, headers={**pipeline, "If-Match": '"7"'}
    )
    assert stale.status_code == 412
    assert stale.json()["type"].endswith("/precondition-failed")
    fresh = client.patch(
        "/v1/systems/sys-m", json={"name": "B"}, headers={**pipeline, "If-Match": '"1"'}
    )
    assert fresh.status_code == 200
    again = client.patch(
        "/v1/systems/sys-m", json={"name": "C"}, headers={**pipeline, "If-Match": '"1"'}
    )
    assert again.status_code == 412
    assert client.get("/v1/systems/sys-m", headers=pipeline).json()["name"] == "B"


def test_patch_refuses_immutable_and_required_nulls(
    client: TestClient, pipeline: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-i")
    for body in (
        {"key": "other"},
        {"stage": "production"},
        {"risk_tier": "minimal"},
        {"version": 9},
    ):
        assert client.patch("/v1/systems/sys-i", json=body, headers=pipeline).status_code == 422, (
            body
        )
    for body in (
        {"name": None},
        {"impact_areas": None},
        {"oversight": None},
        {"owner": {"team": None}},
    ):
        response = client.patch("/v1/systems/sys-i", json=body, headers=pipeline)
        assert response.status_code == 422, body
    assert client.get("/v1/systems/sys-i", headers=pipeline).json()["version"] == 1


def test_patch_unknown_system_is_404(client: TestClient, pipeline: dict[str, str]) -> None:
    assert (
        client.patch("/v1/systems/ghost-sys", json={"name": "x"}, headers=pipeline).status_code
        == 404
    )


def test_there_is_no_delete(
    client: TestClient, pipeline: dict[str, str], admin: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-d")
    response = client.delete("/v1/systems/sys-d", headers=admin)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
