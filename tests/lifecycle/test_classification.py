"""A person confirms the risk tier that sets the bar: until then the policy's
`classification_confirmed_for` gates (production by default) stay closed, and any change of
the tier voids the confirmation (docs/domain.md, Classification)."""

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from app.models import Policy
from app.policies import service as policy_service
from app.policies.document import PolicyRules
from app.policies.service import default_policy_document
from tests.factories import (
    blocking_codes,
    make_system,
    problem,
    readiness,
    record_evidence,
    transition,
)

Headers = dict[str, str]
UNCONFIRMED = ("classification_unconfirmed", None)


def ready_minimal(client: TestClient, headers: Headers, *, key: str = "drafty") -> None:
    """A minimal-tier system whose evidence passes the production gate, its tier unconfirmed:
    what a pipeline alone can reach."""
    make_system(client, headers, key=key, tier="minimal")
    controls = ("data_rules", "access_boundaries", "support_plan", "monitoring", "training")
    for control in (*controls, "workflow"):
        record_evidence(client, headers, key=key, control=control)


def confirm(client: TestClient, headers: Headers, tier: str, key: str = "drafty") -> Any:
    return client.post(
        f"/v1/systems/{key}/classification", json={"tier": tier, "comment": "ok"}, headers=headers
    )


def events_of(client: TestClient, headers: Headers, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(
        "/v1/events", params={"type": kind}, headers=headers
    ).json()["items"]
    return items


def test_a_pipeline_alone_cannot_take_a_system_to_production(
    client: TestClient, pipeline: Headers, approver: Headers
) -> None:
    ready_minimal(client, pipeline)
    answer = readiness(client, pipeline, key="drafty")
    assert blocking_codes(answer, "production") == {UNCONFIRMED}
    assert answer["gates"]["pilot"]["ready"] is True  # only production asks, by default
    assert answer["level"] == "production_ready"  # the evidence is there
    refused = problem(
        transition(client, pipeline, key="drafty", to="production"), 409, "gate-denied"
    )
    assert [item["code"] for item in refused["blocking"]] == ["classification_unconfirmed"]
    problem(confirm(client, pipeline, "minimal"), 403, "forbidden")

    confirmed = confirm(client, approver, "minimal")
    assert confirmed.status_code == 201, confirmed.text
    record = confirmed.json()
    assert (record["tier"], record["comment"]) == ("minimal", "ok")
    assert record["confirmed_by"]["name"] == "approver-key"
    system = client.get("/v1/systems/drafty", headers=pipeline).json()
    assert system["classification"] == {"tier": "minimal", "confirmation_id": record["id"]}
    (event,) = events_of(client, pipeline, "system.classification_confirmed")
    assert event["data"] == {"confirmation_id": record["id"], "tier": "minimal", "comment": "ok"}
    assert transition(client, pipeline, key="drafty", to="production").status_code == 201


def test_confirming_another_tier_than_the_current_one_is_refused(
    client: TestClient, pipeline: Headers, approver: Headers
) -> None:
    ready_minimal(client, pipeline)
    refused = problem(confirm(client, approver, "high"), 409, "tier-mismatch")
    assert refused["current_tier"] == "minimal"
    assert blocking_codes(readiness(client, pipeline, key="drafty"), "production") == {UNCONFIRMED}
    assert events_of(client, pipeline, "system.classification_confirmed") == []


def test_any_tier_change_voids_the_confirmation(
    client: TestClient, pipeline: Headers, approver: Headers
) -> None:
    ready_minimal(client, pipeline)
    assert confirm(client, approver, "minimal").status_code == 201
    assert readiness(client, pipeline, key="drafty")["gates"]["production"]["ready"] is True

    raised = client.patch(
        "/v1/systems/drafty", json={"impact_areas": ["customer_service"]}, headers=pipeline
    )
    assert raised.status_code == 200, raised.text
    assert raised.json()["risk_tier"] == "limited"
    assert raised.json()["classification"] is None
    assert UNCONFIRMED in blocking_codes(readiness(client, pipeline, key="drafty"), "production")

    # Back to the tier once confirmed: a person looks again.
    lowered = client.patch(
        "/v1/systems/drafty", json={"impact_areas": ["drafting"]}, headers=approver
    )
    assert lowered.json()["risk_tier"] == "minimal"
    assert blocking_codes(readiness(client, pipeline, key="drafty"), "production") == {UNCONFIRMED}


def test_an_insider_cannot_confirm_a_tier_that_needs_independence(
    client: TestClient, admin: Headers, approver: Headers
) -> None:
    make_system(client, admin, key="lender", tier="high")
    made = client.post(
        "/v1/api-keys",
        json={"name": "claims-approver", "role": "approver", "teams": ["claims-platform"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    insider = {"Authorization": f"Bearer {made.json()['key']}"}
    problem(confirm(client, insider, "high", key="lender"), 403, "not-independent")
    assert confirm(client, approver, "high", key="lender").status_code == 201


def test_the_policy_names_the_gates_that_ask(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_minimal(client, pipeline)
    for gates, pilot, production in (
        (["pilot", "production"], True, True),
        ([], False, False),
    ):
        document = {**default_policy_document(), "classification_confirmed_for": gates}
        published = client.post("/v1/policies", json={**document, "activate": True}, headers=admin)
        assert published.status_code == 201, published.text
        answer = readiness(client, pipeline, key="drafty")
        assert (UNCONFIRMED in blocking_codes(answer, "pilot")) is pilot
        assert (UNCONFIRMED in blocking_codes(answer, "production")) is production


def test_a_policy_published_before_the_field_asks_no_confirmation() -> None:
    stored = {
        name: value
        for name, value in default_policy_document().items()
        if name != "classification_confirmed_for"
    }
    old = Policy(
        version=7,
        document=stored,
        digest=policy_service.document_digest(stored),
        is_active=False,
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert policy_service.rules_of(old).classification_confirmed_for == []
    # Published now, leaving it out means the default: production.
    assert policy_service.new_policy(
        version=8,
        rules=PolicyRules.model_validate(stored),
        active=False,
        now=datetime(2026, 12, 8, tzinfo=UTC),
        created_by=None,
    ).document["classification_confirmed_for"] == ["production"]
