import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.events import service as events
from app.flows import policy_publication
from app.policies.service import default_policy_document
from tests.factories import make_system, readiness


def new_policy(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(default_policy_document())
    body.update(changes)
    return body


def test_active_policy_is_the_default_v1(client: TestClient, viewer: dict[str, str]) -> None:
    policy = client.get("/v1/policies/active", headers=viewer).json()
    assert (policy["version"], policy["active"]) == (1, True)
    tiers = policy["tiers"]
    assert [tiers[t]["pilot"]["min_score"] for t in ("minimal", "limited", "high", "critical")] == [
        0,
        30,
        50,
        60,
    ]
    assert [
        tiers[t]["production"]["min_score"] for t in ("minimal", "limited", "high", "critical")
    ] == [50, 70, 85, 95]
    assert client.get("/v1/policies/1", headers=viewer).json() == policy


def test_unknown_version_is_404(client: TestClient, viewer: dict[str, str]) -> None:
    assert client.get("/v1/policies/42", headers=viewer).status_code == 404


def test_publish_needs_admin(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    for role in ("viewer", "pipeline", "approver"):
        assert client.post("/v1/policies", json=new_policy(), headers=keys[role]).status_code == 403


def test_publish_without_activation_keeps_v1_active(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.post("/v1/policies", json=new_policy(description="draft"), headers=admin)
    assert response.status_code == 201
    assert response.headers["location"] == "/v1/policies/2"
    assert (response.json()["version"], response.json()["active"]) == (2, False)
    assert client.get("/v1/policies/active", headers=admin).json()["version"] == 1


def test_activating_a_policy_reevaluates_every_system(
    client: TestClient, admin: dict[str, str]
) -> None:
    make_system(client, admin, key="sys-a", tier="minimal")
    assert readiness(client, admin, key="sys-a")["gates"]["pilot"]["ready"] is True
    stricter = new_policy(activate=True)
    stricter["tiers"]["minimal"]["pilot"]["required"].append("training")
    stricter["weights"] = {"purpose": 3}
    response = client.post("/v1/policies", json=stricter, headers=admin)
    assert response.status_code == 201, response.text
    assert client.get("/v1/policies/active", headers=admin).json()["version"] == 2
    assert client.get("/v1/policies/1", headers=admin).json()["active"] is False

    answer = readiness(client, admin, key="sys-a")
    assert answer["policy_version"] == 2
    assert answer["gates"]["pilot"]["ready"] is False
    assert answer["score"] == round(100 * 5 / 19, 1)
    history = client.get("/v1/systems/sys-a/readiness/history", headers=admin).json()["items"]
    assert history[0]["policy_version"] == 2


def test_activation_reevaluates_before_the_event_in_one_transaction(
    client: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event comes last (it takes PostgreSQL's event-order lock, held to commit), and a
    re-evaluation that fails leaves neither the version nor its event behind."""
    make_system(client, admin, key="sys-a", tier="minimal")
    steps: list[str] = []
    reevaluate_all = policy_publication.readiness_service.reevaluate_all
    append = events.append

    def reevaluating(*args: Any, **kwargs: Any) -> None:
        steps.append("reevaluate")
        reevaluate_all(*args, **kwargs)

    def appending(*args: Any, **kwargs: Any) -> None:
        steps.append(kwargs["type"].value)
        append(*args, **kwargs)

    monkeypatch.setattr(policy_publication.readiness_service, "reevaluate_all", reevaluating)
    monkeypatch.setattr(events, "append", appending)
    assert (
        client.post("/v1/policies", json=new_policy(activate=True), headers=admin).status_code
        == 201
    )
    assert steps == ["reevaluate", "policy.published"]

    def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("re-evaluation failed")

    monkeypatch.setattr(policy_publication.readiness_service, "reevaluate_all", failing)
    assert (
        client.post("/v1/policies", json=new_policy(activate=True), headers=admin).status_code
        == 500
    )
    assert client.get("/v1/policies/3", headers=admin).status_code == 404
    assert client.get("/v1/policies/active", headers=admin).json()["version"] == 2
    published = client.get("/v1/events", params={"type": "policy.published"}, headers=admin)
    assert [event["data"] for event in published.json()["items"]] == [
        {"version": 2, "activated": True}
    ]


def test_invalid_policies_are_422_and_nothing_is_published(
    client: TestClient, admin: dict[str, str]
) -> None:
    def broken(mutate: Any) -> dict[str, Any]:
        body = new_policy()
        mutate(body)
        return body

    cases = [
        broken(lambda b: b["tiers"]["high"]["pilot"]["required"].append("vibes")),
        broken(lambda b: b["tiers"]["high"]["pilot"].update(min_score=101)),
        broken(lambda b: b["tiers"]["high"]["production"].update(min_score=-1)),
        broken(lambda b: b.update(weights={"purpose": -1})),
        broken(lambda b: b.update(weights={"vibes": 1})),
        broken(lambda b: b["tiers"].pop("critical")),
        broken(lambda b: b["tiers"]["high"].update(evidence_fresh_days=0)),
        broken(lambda b: b["tiers"]["high"].update(accepted_pilot_outcomes=[])),
        broken(lambda b: b["tiers"]["high"]["pilot"].update(approvals=-1)),
        broken(lambda b: b["tiers"]["high"]["pilot"]["required"].append("purpose")),
        broken(lambda b: b.update(version=9)),
        broken(lambda b: b.update(max_waiver_days=120)),
    ]
    for body in cases:
        response = client.post("/v1/policies", json=body, headers=admin)
        assert response.status_code == 422, response.text
        assert response.json()["errors"]
    assert client.get("/v1/policies/2", headers=admin).status_code == 404


def test_published_versions_are_immutable(client: TestClient, admin: dict[str, str]) -> None:
    for method in ("put", "patch", "delete"):
        response = client.request(method.upper(), "/v1/policies/1", json={}, headers=admin)
        assert response.status_code == 405


def test_controls_catalogue(client: TestClient, viewer: dict[str, str]) -> None:
    items = client.get("/v1/controls", headers=viewer).json()["items"]
    assert len(items) == 17
    assert items[0] == {
        "key": "purpose",
        "title": "Purpose",
        "description": "A clear, written purpose.",
        "satisfied_by": "system_field",
        "attested_by": None,
    }
    attested = {item["key"]: item["attested_by"] for item in items if item["attested_by"]}
    assert attested == {"risk_review": "approver", "approval_path": "approver"}
    assert {item["key"] for item in items if item["satisfied_by"] == "evidence_or_pilot"} == {
        "testing_evidence",
        "measurable_value",
    }
