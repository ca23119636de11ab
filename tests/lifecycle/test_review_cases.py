"""Edge cases around gates, approvals, time and ids that a careful reader of the code found."""

from datetime import timedelta

from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from tests.factories import (
    approve,
    confirm_tier,
    make_system,
    meet_every_control,
    readiness,
    record_evidence,
    transition,
)

Headers = dict[str, str]
OVERRIDE = {"justification": "Signed off by the risk committee, minute 42"}


def test_not_applicable_cannot_sidestep_a_non_waivable_control(
    client: TestClient, pipeline: Headers, approver: Headers
) -> None:
    make_system(client, pipeline, key="triage", tier="critical")
    meet_every_control(client, pipeline, key="triage", attester=approver)
    for control in ("human_oversight", "fallback_process"):
        record_evidence(
            client,
            pipeline,
            key="triage",
            control=control,
            status="not_applicable",
            summary="we think it does not apply",
        )
    blocking = readiness(client, pipeline, key="triage")["gates"]["pilot"]["blocking"]
    assert {(item["code"], item["control"]) for item in blocking} >= {
        ("control_not_met", "human_oversight"),
        ("control_not_met", "fallback_process"),
    }


def test_system_reads_and_ready_for_see_time_passing(
    client: TestClient, pipeline: Headers, approver: Headers, clock: FakeClock
) -> None:
    make_system(client, pipeline, key="drafty", tier="minimal")
    confirm_tier(client, approver, key="drafty")
    tomorrow = (clock.now + timedelta(days=1)).isoformat()
    for control in ("data_rules", "access_boundaries", "support_plan"):
        record_evidence(client, pipeline, key="drafty", control=control, expires_at=tomorrow)
    for control in ("monitoring", "training", "workflow"):
        record_evidence(client, pipeline, key="drafty", control=control)
    assert client.get("/v1/systems/drafty", headers=pipeline).json()["production_ready"] is True
    listed = client.get("/v1/systems", params={"ready_for": "production"}, headers=pipeline)
    assert [item["key"] for item in listed.json()["items"]] == ["drafty"]

    clock.advance(days=2)
    system = client.get("/v1/systems/drafty", headers=pipeline).json()
    assert (system["production_ready"], system["level"]) == (False, "pilot_ready")
    assert system["score"] == readiness(client, pipeline, key="drafty")["score"]
    listed = client.get("/v1/systems", params={"ready_for": "production"}, headers=pipeline)
    assert listed.json()["items"] == []


def test_stage_at_follows_commit_order_when_clocks_disagree(
    client: TestClient, pipeline: Headers, clock: FakeClock
) -> None:
    make_system(client, pipeline, key="drafty", tier="minimal")
    clock.advance(hours=2)
    transition(client, pipeline, key="drafty", to="pilot")
    clock.advance(hours=-1)  # a replica whose clock is an hour behind
    retired = transition(client, pipeline, key="drafty", to="retired").json()
    assert (
        retired["occurred_at"]
        >= client.get("/v1/systems/drafty/transitions", headers=pipeline).json()["items"][1][
            "occurred_at"
        ]
    )
    later = (clock.now + timedelta(hours=3)).isoformat()
    at = client.get("/v1/systems/drafty/stage", params={"at": later}, headers=pipeline).json()
    assert at["stage"] == "retired"


def test_a_reject_outlives_a_transition(
    client: TestClient, keys: dict[str, Headers], clock: FakeClock
) -> None:
    pipeline, approver = keys["pipeline"], keys["approver"]
    make_system(client, pipeline, key="lender", tier="high")
    meet_every_control(client, pipeline, key="lender", attester=approver)
    approve(client, approver, key="lender", stage="production", decision="reject")
    clock.advance(minutes=1)
    assert transition(client, pipeline, key="lender", to="pilot").status_code == 201
    clock.advance(minutes=1)
    codes = {
        i["code"]
        for i in readiness(client, pipeline, key="lender")["gates"]["production"]["blocking"]
    }
    assert "approval_rejected" in codes
    approve(client, approver, key="lender", stage="production")
    codes = {
        i["code"]
        for i in readiness(client, pipeline, key="lender")["gates"]["production"]["blocking"]
    }
    assert "approval_rejected" not in codes
    assert "approvals_missing" not in codes


def test_gate_check_agrees_with_a_gateless_move(client: TestClient, admin: Headers) -> None:
    make_system(client, admin, key="lender", tier="high")
    assert (
        transition(client, admin, key="lender", to="production", override=OVERRIDE).status_code
        == 201
    )
    check = client.post(
        "/v1/systems/lender/gate-checks", json={"target_stage": "pilot"}, headers=admin
    ).json()
    assert (check["allowed"], check["blocking"], check["move_valid"]) == (True, [], True)
    assert transition(client, admin, key="lender", to="pilot").status_code == 201


def test_override_checks_role_first_and_records_only_real_overrides(
    client: TestClient, keys: dict[str, Headers], viewer: Headers
) -> None:
    make_system(client, keys["pipeline"], key="drafty", tier="minimal")
    short = {"justification": "because"}
    assert (
        transition(client, keys["pipeline"], key="drafty", to="pilot", override=short).status_code
        == 403
    )
    assert (
        transition(client, keys["admin"], key="drafty", to="pilot", override=short).status_code
        == 422
    )
    passing = transition(client, keys["admin"], key="drafty", to="pilot", override=OVERRIDE)
    assert passing.status_code == 201
    assert passing.json()["override"] is None  # the pilot gate passed: nothing was overridden
    event = client.get("/v1/events", params={"type": "transition.recorded"}, headers=viewer).json()
    assert event["items"][-1]["data"]["override"] is None


def test_blank_reason_is_refused(client: TestClient, pipeline: Headers) -> None:
    make_system(client, pipeline, key="drafty", tier="minimal")
    assert transition(client, pipeline, key="drafty", to="pilot", reason="   ").status_code == 422


def test_ids_beyond_the_id_range_are_client_errors(client: TestClient, admin: Headers) -> None:
    huge = 10**30
    import base64
    import json

    cursor = base64.urlsafe_b64encode(json.dumps({"p": huge}).encode()).decode().rstrip("=")
    assert client.get("/v1/events", params={"after": cursor}, headers=admin).status_code == 400
    assert client.get("/v1/systems", params={"cursor": cursor}, headers=admin).status_code == 400
    assert client.get(f"/v1/policies/{huge}", headers=admin).status_code == 422
    assert client.delete(f"/v1/api-keys/{huge}", headers=admin).status_code == 422
    assert client.get(f"/v1/pilots/{huge}", headers=admin).status_code == 422
    # Just past a 32-bit id: PostgreSQL's INTEGER would fail on it, so it never reaches it.
    assert client.get(f"/v1/pilots/{2**31}", headers=admin).status_code == 422
