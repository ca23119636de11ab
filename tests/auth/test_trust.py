"""Who may say what: team-scoped keys, attestation rights, independent approval and the
approver's say over lowering a risk tier, each as a client meets it."""

import copy
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.controls.catalogue import EVIDENCE_CONTROLS
from app.policies.service import default_policy_document
from tests.conftest import auth
from tests.factories import make_system, problem, record_evidence, system_body, transition

Headers = dict[str, str]
CLAIMS = "claims-platform"
PAYMENTS = "payments"


def new_key(
    client: TestClient, admin: Headers, *, role: str, teams: list[str] | None = None
) -> Headers:
    body: dict[str, Any] = {"name": f"{role}-{'-'.join(teams or ['all'])}", "role": role}
    if teams is not None:
        body["teams"] = teams
    response = client.post("/v1/api-keys", json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["teams"] == (sorted(teams) if teams is not None else None)
    return auth(response.json()["key"])


def owner(team: str) -> dict[str, str]:
    return {"team": team, "contact": f"{team}@example.com"}


def events_of(client: TestClient, admin: Headers, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(
        "/v1/events", params={"system": key, "limit": 200}, headers=admin
    ).json()["items"]
    return items


# Team-scoped keys


def test_keys_carry_their_teams_and_admin_keys_cannot_be_scoped(
    client: TestClient, admin: Headers
) -> None:
    new_key(client, admin, role="pipeline", teams=[PAYMENTS, CLAIMS])
    listed = client.get("/v1/api-keys", headers=admin).json()["items"]
    assert [item["teams"] for item in listed] == [None, [CLAIMS, PAYMENTS]]
    for body in (
        {"name": "a", "role": "admin", "teams": [CLAIMS]},
        {"name": "b", "role": "pipeline", "teams": []},
        {"name": "c", "role": "pipeline", "teams": [CLAIMS, CLAIMS]},
        {"name": "d", "role": "pipeline", "teams": [f"t{n}" for n in range(51)]},
        {"name": "e", "role": "pipeline", "teams": [""]},
    ):
        problem(client.post("/v1/api-keys", json=body, headers=admin), 422, "validation-error")
    # null is the platform-wide key of today
    created = client.post(
        "/v1/api-keys", json={"name": "f", "role": "admin", "teams": None}, headers=admin
    )
    assert created.status_code == 201
    assert created.json()["teams"] is None


def test_a_scoped_key_creates_systems_only_for_its_teams(
    client: TestClient, admin: Headers
) -> None:
    scoped = new_key(client, admin, role="pipeline", teams=[CLAIMS])
    make_system(client, scoped, key="claims-triage", owner=owner(CLAIMS))
    fraud = system_body(key="fraud", owner=owner(PAYMENTS))
    outside = client.post("/v1/systems", json=fraud, headers=scoped)
    assert problem(outside, 403, "out-of-scope")["teams"] == [CLAIMS]
    without_owner = {name: value for name, value in fraud.items() if name != "owner"}
    ownerless = client.post("/v1/systems", json=without_owner, headers=scoped)
    problem(ownerless, 403, "out-of-scope")
    assert client.get("/v1/systems/fraud", headers=admin).status_code == 404


def test_a_scoped_key_cannot_take_over_another_teams_system(
    client: TestClient, admin: Headers
) -> None:
    make_system(client, admin, key="fraud", tier="limited", owner=owner(PAYMENTS))
    make_system(client, admin, key="claims-triage", tier="limited", owner=owner(CLAIMS))
    scoped = new_key(client, admin, role="pipeline", teams=[CLAIMS, "claims-data"])

    takeover = client.patch("/v1/systems/fraud", json={"owner": owner(CLAIMS)}, headers=scoped)
    assert problem(takeover, 403, "out-of-scope")["owner_team"] == PAYMENTS
    give_away = client.patch(
        "/v1/systems/claims-triage", json={"owner": {"team": PAYMENTS}}, headers=scoped
    )
    problem(give_away, 403, "out-of-scope")
    orphan = client.patch("/v1/systems/claims-triage", json={"owner": None}, headers=scoped)
    problem(orphan, 403, "out-of-scope")
    within = client.patch(
        "/v1/systems/claims-triage", json={"owner": {"team": "claims-data"}}, headers=scoped
    )
    assert within.status_code == 200, within.text
    assert within.json()["owner"]["team"] == "claims-data"
    assert client.get("/v1/systems/fraud", headers=admin).json()["owner"]["team"] == PAYMENTS


def test_reads_and_gate_checks_are_never_scoped(client: TestClient, admin: Headers) -> None:
    make_system(client, admin, key="fraud", owner=owner(PAYMENTS))
    scoped = new_key(client, admin, role="pipeline", teams=[CLAIMS])
    for path in ("/v1/systems/fraud", "/v1/systems/fraud/readiness", "/v1/systems/fraud/evidence"):
        assert client.get(path, headers=scoped).status_code == 200, path
    check = client.post(
        "/v1/systems/fraud/gate-checks", json={"target_stage": "pilot"}, headers=scoped
    )
    assert check.status_code == 200, check.text


def test_an_ownerless_system_is_written_only_by_platform_wide_keys(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    make_system(client, admin, key="legacy", owner=None)
    scoped = new_key(client, admin, role="pipeline", teams=[CLAIMS])
    problem(
        client.put("/v1/systems/legacy/evidence/training", json={"status": "met"}, headers=scoped),
        403,
        "out-of-scope",
    )
    record_evidence(client, pipeline, key="legacy", control="training")


def test_the_walk_around_of_another_teams_system_now_fails_at_every_step(
    client: TestClient, admin: Headers
) -> None:
    make_system(client, admin, key="fraud", tier="limited", owner=owner(PAYMENTS))
    assert (
        transition(
            client,
            admin,
            key="fraud",
            to="pilot",
            override={"justification": "a pilot the payments team runs"},
        ).status_code
        == 201
    )
    pilot = client.post(
        "/v1/systems/fraud/pilots",
        json={"name": "p", "criteria": [{"metric": "recall", "op": ">=", "target": 0.9}]},
        headers=admin,
    ).json()
    scoped = new_key(client, admin, role="pipeline", teams=[CLAIMS])
    attempts = [
        client.put("/v1/systems/fraud/evidence/monitoring", json={"status": "met"}, headers=scoped),
        client.patch("/v1/systems/fraud", json={"owner": owner(CLAIMS)}, headers=scoped),
        client.post(
            f"/v1/pilots/{pilot['id']}/results",
            json={"metrics": {"recall": 0.1}, "findings": ["poor_data"]},
            headers=scoped,
        ),
        client.post(f"/v1/pilots/{pilot['id']}/conclude", headers=scoped),
        transition(client, scoped, key="fraud", to="retired"),
    ]
    for attempt in attempts:
        problem(attempt, 403, "out-of-scope")
    assert client.get("/v1/systems/fraud", headers=admin).json()["stage"] == "pilot"
    assert client.get(f"/v1/pilots/{pilot['id']}", headers=admin).json()["status"] == "running"
    assert client.get("/v1/systems/fraud/evidence", headers=admin).json()["items"] == []


def test_a_batch_of_evidence_puts_refuses_only_the_out_of_scope_ones(
    live_server: str, client: TestClient, admin: Headers
) -> None:
    import httpx

    make_system(client, admin, key="fraud", owner=owner(PAYMENTS))
    make_system(client, admin, key="claims-triage", owner=owner(CLAIMS))
    scoped = new_key(client, admin, role="pipeline", teams=[CLAIMS])
    import asyncio

    async def put_all() -> list[int]:
        async with httpx.AsyncClient(base_url=live_server, headers=scoped) as http:
            puts = [
                http.put(f"/v1/systems/{key}/evidence/{control}", json={"status": "met"})
                for control in ("monitoring", "training", "workflow", "data_quality")
                for key in ("fraud", "claims-triage")
            ]
            return [response.status_code for response in await asyncio.gather(*puts)]

    statuses = asyncio.run(put_all())
    assert statuses == [403, 200] * 4
    assert client.get("/v1/systems/fraud/evidence", headers=admin).json()["items"] == []
    assert len(client.get("/v1/systems/claims-triage/evidence", headers=admin).json()["items"]) == 4


# Attestation


def test_risk_review_and_approval_path_need_an_approver_by_default(
    client: TestClient, admin: Headers, pipeline: Headers, approver: Headers
) -> None:
    make_system(client, admin, key="claims-triage")
    for control in ("risk_review", "approval_path"):
        refused = client.put(
            f"/v1/systems/claims-triage/evidence/{control}",
            json={"status": "met"},
            headers=pipeline,
        )
        body = problem(refused, 403, "attestation-role")
        assert (body["control"], body["required_role"]) == (control, "approver")
        record_evidence(client, approver, key="claims-triage", control=control)
    history = client.get(
        "/v1/systems/claims-triage/evidence/risk_review/history", headers=admin
    ).json()["items"]
    assert len(history) == 1  # the refused write left nothing


def publish(client: TestClient, admin: Headers, **changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(default_policy_document())
    for name in ("attested_by",):
        document.pop(name)
    for tier in document["tiers"].values():
        tier.pop("independent_approval")
    document.update(changes)
    response = client.post("/v1/policies", json={**document, "activate": True}, headers=admin)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_a_policy_without_the_new_fields_gets_their_defaults(
    client: TestClient, admin: Headers
) -> None:
    published = publish(client, admin)
    assert published["attested_by"] == {"risk_review": "approver", "approval_path": "approver"}
    assert {tier: rule["independent_approval"] for tier, rule in published["tiers"].items()} == {
        "minimal": False,
        "limited": False,
        "high": True,
        "critical": True,
    }


def test_the_policy_decides_who_attests_and_the_catalogue_shows_it(
    client: TestClient, admin: Headers, pipeline: Headers, approver: Headers
) -> None:
    make_system(client, admin, key="claims-triage")
    publish(client, admin, attested_by={"monitoring": "admin"})
    catalogue = client.get("/v1/controls", headers=pipeline).json()["items"]
    assert {item["key"]: item["attested_by"] for item in catalogue if item["attested_by"]} == {
        "monitoring": "admin"
    }
    problem(
        client.put(
            "/v1/systems/claims-triage/evidence/monitoring",
            json={"status": "met"},
            headers=approver,
        ),
        403,
        "attestation-role",
    )
    record_evidence(client, admin, key="claims-triage", control="monitoring")
    # No longer named: a pipeline may record the risk review.
    record_evidence(client, pipeline, key="claims-triage", control="risk_review")


@pytest.mark.parametrize(
    "attested_by",
    [{"purpose": "approver"}, {"monitoring": "viewer"}, {"monitoring": "owner"}, {"nope": "admin"}],
)
def test_attested_by_names_evidence_controls_and_writing_roles(
    client: TestClient, admin: Headers, attested_by: dict[str, str]
) -> None:
    document = {**default_policy_document(), "attested_by": attested_by}
    problem(client.post("/v1/policies", json=document, headers=admin), 422, "validation-error")


# Separation of duties


def test_approvals_of_high_tier_systems_must_come_from_outside_the_owner_team(
    client: TestClient, admin: Headers
) -> None:
    make_system(client, admin, key="claims-triage", tier="high", owner=owner(CLAIMS))
    inside = new_key(client, admin, role="approver", teams=[CLAIMS])
    outside = new_key(client, admin, role="approver", teams=[PAYMENTS])
    platform = new_key(client, admin, role="approver")
    body = {"target_stage": "production", "decision": "approve"}
    url = "/v1/systems/claims-triage/approvals"
    assert (
        problem(client.post(url, json=body, headers=inside), 403, "not-independent")["owner_team"]
        == CLAIMS
    )
    # Approvals are not team-scoped: an approver of another team may approve.
    assert client.post(url, json=body, headers=outside).status_code == 201
    assert client.post(url, json=body, headers=platform).status_code == 201
    assert len(client.get(url, headers=admin).json()["items"]) == 2


def test_lower_tiers_and_policies_that_say_so_accept_approvals_from_the_owner_team(
    client: TestClient, admin: Headers
) -> None:
    make_system(client, admin, key="helpdesk", tier="limited", owner=owner(CLAIMS))
    make_system(client, admin, key="claims-triage", tier="high", owner=owner(CLAIMS))
    inside = new_key(client, admin, role="approver", teams=[CLAIMS])
    body = {"target_stage": "production", "decision": "approve"}
    assert (
        client.post("/v1/systems/helpdesk/approvals", json=body, headers=inside).status_code == 201
    )
    url = "/v1/systems/claims-triage/approvals"
    problem(client.post(url, json=body, headers=inside), 403, "not-independent")
    tiers = copy.deepcopy(default_policy_document()["tiers"])
    tiers["high"]["independent_approval"] = False
    publish(client, admin, tiers=tiers)
    assert client.post(url, json=body, headers=inside).status_code == 201


def test_the_tier_walk_around_fails_at_the_patch(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    # Money with full automation: high, moved up one for the automation.
    make_system(
        client, pipeline, key="auto-lender", impact_areas=["money"], oversight="fully_automated"
    )
    assert client.get("/v1/systems/auto-lender", headers=admin).json()["risk_tier"] == "critical"
    lowered = client.patch(
        "/v1/systems/auto-lender", json={"impact_areas": ["drafting"]}, headers=pipeline
    )
    body = problem(lowered, 403, "tier-lowering-needs-approver")
    assert (body["from_tier"], body["to_tier"]) == ("critical", "minimal")
    after = client.get("/v1/systems/auto-lender", headers=admin).json()
    assert (after["risk_tier"], after["impact_areas"], after["version"]) == (
        "critical",
        ["money"],
        1,
    )
    for control in (
        "data_rules",
        "access_boundaries",
        "support_plan",
        "monitoring",
        "training",
        "workflow",
    ):
        record_evidence(client, pipeline, key="auto-lender", control=control)
    moved = transition(client, pipeline, key="auto-lender", to="production")
    assert problem(moved, 409, "gate-denied")["blocking"]
    types = [event["type"] for event in events_of(client, admin, "auto-lender")]
    assert "system.updated" not in types
    assert "system.tier_changed" not in types


@pytest.mark.parametrize(
    ("system", "patch"),
    [
        # Each lowers the tier through one field alone.
        ({"impact_areas": ["money"]}, {"impact_areas": ["customer_service"]}),
        (
            {"impact_areas": ["operations"], "oversight": "fully_automated"},
            {"oversight": "human_reviews_all"},
        ),
        (
            {"impact_areas": ["operations"], "declared_risk_tier": "critical"},
            {"declared_risk_tier": None},
        ),
    ],
)
def test_every_way_of_lowering_the_tier_needs_an_approver(
    client: TestClient,
    admin: Headers,
    pipeline: Headers,
    approver: Headers,
    system: dict[str, Any],
    patch: dict[str, Any],
) -> None:
    make_system(client, admin, key="ops-bot", **system)
    before = client.get("/v1/systems/ops-bot", headers=admin).json()["risk_tier"]
    problem(
        client.patch("/v1/systems/ops-bot", json=patch, headers=pipeline),
        403,
        "tier-lowering-needs-approver",
    )
    assert client.get("/v1/systems/ops-bot", headers=admin).json()["risk_tier"] == before
    changed = client.patch("/v1/systems/ops-bot", json=patch, headers=approver)
    assert changed.status_code == 200, changed.text
    assert changed.json()["risk_tier"] != before
    events = events_of(client, admin, "ops-bot")
    assert [event["type"] for event in events[-2:]] == ["system.updated", "system.tier_changed"]
    tiered = events[-1]
    assert (tiered["data"]["from"], tiered["data"]["to"]) == (before, changed.json()["risk_tier"])
    assert tiered["actor"]["name"] == "approver-key"


def test_raising_the_tier_is_always_allowed_and_recorded(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    make_system(client, admin, key="helpdesk", tier="limited")
    raised = client.patch(
        "/v1/systems/helpdesk",
        json={"impact_areas": ["customer_service", "care"]},
        headers=pipeline,
    )
    assert raised.status_code == 200, raised.text
    assert raised.json()["risk_tier"] == "critical"
    same = client.patch("/v1/systems/helpdesk", json={"name": "Helpdesk 2"}, headers=pipeline)
    assert same.status_code == 200
    tiered = [e for e in events_of(client, admin, "helpdesk") if e["type"] == "system.tier_changed"]
    assert [e["data"]["from"] + ">" + e["data"]["to"] for e in tiered] == ["limited>critical"]


def test_unscoped_keys_write_as_before(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    make_system(client, pipeline, key="fraud", tier="minimal", owner=owner(PAYMENTS))
    for control in EVIDENCE_CONTROLS:
        if control not in ("risk_review", "approval_path"):
            record_evidence(client, pipeline, key="fraud", control=control)
    assert (
        client.patch(
            "/v1/systems/fraud", json={"owner": owner(CLAIMS)}, headers=pipeline
        ).status_code
        == 200
    )
    assert transition(client, pipeline, key="fraud", to="pilot").status_code == 201


# Independence judged when approvals are counted, not only when they are given


def approvals_missing(client: TestClient, admin: Headers, key: str) -> bool:
    check = client.post(
        f"/v1/systems/{key}/gate-checks", json={"target_stage": "production"}, headers=admin
    )
    assert check.status_code == 200, check.text
    return any(item["code"] == "approvals_missing" for item in check.json()["blocking"])


APPROVE = {"target_stage": "production", "decision": "approve"}


def test_an_insiders_approval_does_not_count_once_the_tier_is_raised(
    client: TestClient, admin: Headers
) -> None:
    scoped = new_key(client, admin, role="pipeline", teams=[CLAIMS])
    inside = new_key(client, admin, role="approver", teams=[CLAIMS])
    make_system(client, scoped, key="claims-triage", tier="limited", owner=owner(CLAIMS))
    url = "/v1/systems/claims-triage/approvals"
    assert client.post(url, json=APPROVE, headers=inside).status_code == 201  # limited: fine
    raised = client.patch(
        "/v1/systems/claims-triage", json={"impact_areas": ["money"]}, headers=scoped
    )
    assert raised.json()["risk_tier"] == "high"
    assert approvals_missing(client, admin, "claims-triage")
    # An outsider's approval is the one that counts.
    outside = new_key(client, admin, role="approver", teams=[PAYMENTS])
    assert client.post(url, json=APPROVE, headers=outside).status_code == 201
    assert not approvals_missing(client, admin, "claims-triage")


def test_the_owner_team_cannot_lower_a_tier_that_needs_outsiders(
    client: TestClient, admin: Headers, approver: Headers
) -> None:
    make_system(client, admin, key="claims-triage", tier="high", owner=owner(CLAIMS))
    inside = new_key(client, admin, role="approver", teams=[CLAIMS])
    lower = {"impact_areas": ["customer_service"]}
    refused = client.patch("/v1/systems/claims-triage", json=lower, headers=inside)
    assert problem(refused, 403, "not-independent")["owner_team"] == CLAIMS
    assert client.get("/v1/systems/claims-triage", headers=admin).json()["risk_tier"] == "high"
    # A platform-wide approver may.
    lowered = client.patch("/v1/systems/claims-triage", json=lower, headers=approver)
    assert lowered.json()["risk_tier"] == "limited"


def test_lowering_approving_and_raising_again_does_not_launder_an_approval(
    client: TestClient, admin: Headers, approver: Headers, pipeline: Headers
) -> None:
    make_system(client, admin, key="claims-triage", tier="high", owner=owner(CLAIMS))
    inside = new_key(client, admin, role="approver", teams=[CLAIMS])
    url = "/v1/systems/claims-triage/approvals"
    problem(client.post(url, json=APPROVE, headers=inside), 403, "not-independent")
    lowered = client.patch(
        "/v1/systems/claims-triage", json={"impact_areas": ["customer_service"]}, headers=approver
    )
    assert lowered.json()["risk_tier"] == "limited"
    assert client.post(url, json=APPROVE, headers=inside).status_code == 201
    raised = client.patch(
        "/v1/systems/claims-triage", json={"impact_areas": ["money"]}, headers=pipeline
    )
    assert raised.json()["risk_tier"] == "high"
    assert approvals_missing(client, admin, "claims-triage")


def test_moving_the_owner_team_away_and_back_does_not_launder_an_approval(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    make_system(client, admin, key="claims-triage", tier="high", owner=owner(CLAIMS))
    inside = new_key(client, admin, role="approver", teams=[CLAIMS])
    url = "/v1/systems/claims-triage/approvals"
    client.patch("/v1/systems/claims-triage", json={"owner": owner(PAYMENTS)}, headers=pipeline)
    assert client.post(url, json=APPROVE, headers=inside).status_code == 201
    assert not approvals_missing(client, admin, "claims-triage")
    client.patch("/v1/systems/claims-triage", json={"owner": owner(CLAIMS)}, headers=pipeline)
    assert approvals_missing(client, admin, "claims-triage")


def test_concluding_a_pilot_needs_the_role_the_policy_names_for_its_evidence(
    client: TestClient, admin: Headers, pipeline: Headers, approver: Headers
) -> None:
    publish(client, admin, attested_by={"testing_evidence": "approver"})
    make_system(client, admin, key="helpdesk", tier="limited")
    moved = transition(
        client,
        admin,
        key="helpdesk",
        to="pilot",
        override={"justification": "a pilot before anything else"},
    )
    assert moved.status_code == 201, moved.text
    pilot = client.post(
        "/v1/systems/helpdesk/pilots",
        json={"name": "p", "criteria": [{"metric": "recall", "op": ">=", "target": 0.9}]},
        headers=pipeline,
    ).json()
    client.post(
        f"/v1/pilots/{pilot['id']}/results", json={"metrics": {"recall": 1}}, headers=pipeline
    )
    refused = client.post(f"/v1/pilots/{pilot['id']}/conclude", headers=pipeline)
    assert problem(refused, 403, "attestation-role")["control"] == "testing_evidence"
    assert client.get(f"/v1/pilots/{pilot['id']}", headers=admin).json()["status"] == "running"
    assert client.get("/v1/systems/helpdesk/evidence", headers=admin).json()["items"] == []
    concluded = client.post(f"/v1/pilots/{pilot['id']}/conclude", headers=approver)
    assert concluded.status_code == 200, concluded.text


def test_a_policy_stored_before_the_trust_fields_gets_their_defaults(
    client: TestClient, admin: Headers, pipeline: Headers, engine: Any
) -> None:
    from sqlalchemy import update

    from app.models import Policy

    legacy = copy.deepcopy(default_policy_document())
    legacy.pop("attested_by")
    for tier in legacy["tiers"].values():
        tier.pop("independent_approval")
    with engine.begin() as connection:
        connection.execute(update(Policy).where(Policy.version == 1).values(document=legacy))
    make_system(client, admin, key="claims-triage")
    problem(
        client.put(
            "/v1/systems/claims-triage/evidence/risk_review",
            json={"status": "met"},
            headers=pipeline,
        ),
        403,
        "attestation-role",
    )
    active = client.get("/v1/policies/active", headers=admin).json()
    assert active["tiers"]["critical"]["independent_approval"] is True


def test_one_batch_of_evidence_writes_refuses_each_write_for_its_own_reason(
    app: Any, client: TestClient, admin: Headers, clock: Any
) -> None:
    from app.auth.roles import Principal, Role
    from app.db import write_transaction
    from app.errors import AttestationRole, NotFound, OutOfScope
    from app.evidence import service as evidence_service
    from app.evidence.schemas import EvidenceRead, EvidenceWrite

    make_system(client, admin, key="fraud", owner=owner(PAYMENTS))
    make_system(client, admin, key="claims-triage", owner=owner(CLAIMS))
    scoped = Principal(key_id=None, name="claims-ci", role=Role.pipeline, teams=frozenset({CLAIMS}))
    platform = Principal(key_id=None, name="platform-ci", role=Role.pipeline)
    met = EvidenceWrite.model_validate({"status": "met"})

    def write(key: str, control: str, by: Principal) -> Any:
        return evidence_service.NewEvidence(key, control, met, by, clock.now)

    with write_transaction(app.state.database) as session:
        outcomes = evidence_service.record_many(
            session,
            [
                write("claims-triage", "monitoring", scoped),
                write("fraud", "monitoring", scoped),
                write("fraud", "risk_review", platform),
                write("fraud", "training", platform),
                write("no-such-system", "training", platform),
            ],
        )
    assert [type(outcome) for outcome in outcomes] == [
        EvidenceRead,
        OutOfScope,
        AttestationRole,
        EvidenceRead,
        NotFound,
    ]
    fraud = client.get("/v1/systems/fraud/evidence", headers=admin).json()["items"]
    assert [item["control"] for item in fraud] == ["training"]
    events = [
        e["data"]["control"]
        for e in events_of(client, admin, "fraud")
        if e["type"] == "evidence.recorded"
    ]
    assert events == ["training"]


def test_a_scoped_identity_does_every_write_on_its_own_teams_system(
    client: TestClient, admin: Headers, clock: Any
) -> None:
    pipeline = new_key(client, admin, role="pipeline", teams=[CLAIMS])
    approver = new_key(client, admin, role="approver", teams=[CLAIMS])
    key = "claims-triage"
    created = client.post(
        "/v1/systems",
        json=system_body(key=key, tier="limited", owner=owner(CLAIMS)),
        headers=pipeline,
    )
    steps = [("create", created, 201)]
    steps.append(
        (
            "patch",
            client.patch(f"/v1/systems/{key}", json={"scope": "Suggests"}, headers=pipeline),
            200,
        )
    )
    for control in ("data_rules", "access_boundaries", "monitoring"):
        steps.append(
            (
                f"evidence {control}",
                client.put(
                    f"/v1/systems/{key}/evidence/{control}",
                    json={"status": "met"},
                    headers=pipeline,
                ),
                200,
            )
        )
    steps.append(("to pilot", transition(client, pipeline, key=key, to="pilot"), 201))
    pilot = client.post(
        f"/v1/systems/{key}/pilots",
        json={"name": "p", "criteria": [{"metric": "recall", "op": ">=", "target": 0.9}]},
        headers=pipeline,
    )
    steps.append(("pilot", pilot, 201))
    pilot_id = pilot.json()["id"]
    steps.append(
        (
            "results",
            client.post(
                f"/v1/pilots/{pilot_id}/results",
                json={"metrics": {"recall": 0.95}},
                headers=pipeline,
            ),
            201,
        )
    )
    steps.append(
        ("conclude", client.post(f"/v1/pilots/{pilot_id}/conclude", headers=pipeline), 200)
    )
    waiver = client.post(
        f"/v1/systems/{key}/waivers",
        json={
            "control": "training",
            "justification": "booked",
            "expires_at": (clock.now + timedelta(days=30)).isoformat(),
        },
        headers=approver,
    )
    steps.append(("waiver", waiver, 201))
    steps.append(
        (
            "revoke waiver",
            client.delete(f"/v1/systems/{key}/waivers/{waiver.json()['id']}", headers=approver),
            204,
        )
    )
    # limited tier: the owner team's approver may approve
    steps.append(
        (
            "approval",
            client.post(f"/v1/systems/{key}/approvals", json=APPROVE, headers=approver),
            201,
        )
    )
    steps.append(("back to proposed", transition(client, pipeline, key=key, to="proposed"), 201))
    assert [(name, response.status_code) for name, response, _ in steps] == [
        (name, status) for name, _, status in steps
    ]


def test_waiving_a_control_needs_the_role_that_may_attest_it(
    client: TestClient, admin: Headers, approver: Headers, clock: Any
) -> None:
    make_system(client, admin, key="claims-triage", tier="limited")
    publish(client, admin, attested_by={"risk_review": "admin"})
    body = {
        "control": "risk_review",
        "justification": "signed on paper",
        "expires_at": (clock.now + timedelta(days=30)).isoformat(),
    }
    url = "/v1/systems/claims-triage/waivers"
    refused = client.post(url, json=body, headers=approver)
    assert problem(refused, 403, "attestation-role")["required_role"] == "admin"
    assert client.get(url, headers=admin).json()["items"] == []
    assert client.post(url, json=body, headers=admin).status_code == 201
