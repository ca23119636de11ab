from datetime import timedelta
from typing import Any

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


def codes(response: Any) -> set[tuple[str, str | None]]:
    return {(item["code"], item.get("control")) for item in response.json()["blocking"]}


def denied(response: Any) -> set[tuple[str, str | None]]:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/gate-denied")
    return codes(response)


def test_minimal_walk(client: TestClient, pipeline: Headers, approver: Headers) -> None:
    make_system(client, pipeline, key="drafty", tier="minimal")
    moved = transition(client, pipeline, key="drafty", to="pilot", expected_stage="proposed")
    assert moved.status_code == 201, moved.text
    body = moved.json()
    assert (body["from_stage"], body["to_stage"], body["gate"]) == ("proposed", "pilot", "pilot")
    assert body["actor"]["name"] == "pipeline-key"

    assert denied(transition(client, pipeline, key="drafty", to="production")) == {
        ("score_below_threshold", None),
        ("control_missing", "data_rules"),
        ("control_missing", "access_boundaries"),
        ("control_missing", "support_plan"),
        ("classification_unconfirmed", None),
    }
    # A person confirms the minimal tier the pipeline's answers gave it.
    confirm_tier(client, approver, key="drafty")
    for control in ("data_rules", "access_boundaries", "support_plan"):
        record_evidence(client, pipeline, key="drafty", control=control)
    # 6 of 17 controls met: 35.3 is below the minimal production threshold of 50.
    assert denied(transition(client, pipeline, key="drafty", to="production")) == {
        ("score_below_threshold", None)
    }
    for control in ("monitoring", "training", "workflow"):
        record_evidence(client, pipeline, key="drafty", control=control)
    assert transition(client, pipeline, key="drafty", to="production").status_code == 201
    assert readiness(client, pipeline, key="drafty")["stage"] == "production"


def test_limited_walk_with_partial_and_stale_evidence(
    client: TestClient, pipeline: Headers, approver: Headers, clock: FakeClock
) -> None:
    make_system(client, pipeline, key="helpdesk", tier="limited")
    assert denied(transition(client, pipeline, key="helpdesk", to="pilot")) == {
        ("score_below_threshold", None),
        ("control_missing", "data_rules"),
        ("control_missing", "access_boundaries"),
    }
    record_evidence(client, pipeline, key="helpdesk", control="data_rules", status="partial")
    record_evidence(client, pipeline, key="helpdesk", control="access_boundaries")
    assert ("control_partial", "data_rules") in denied(
        transition(client, pipeline, key="helpdesk", to="pilot")
    )
    record_evidence(client, pipeline, key="helpdesk", control="data_rules")
    record_evidence(client, pipeline, key="helpdesk", control="training")
    assert transition(client, pipeline, key="helpdesk", to="pilot").status_code == 201

    meet_every_control(client, pipeline, key="helpdesk", attester=approver)
    clock.advance(days=366)  # limited tier: evidence older than 365 days is stale
    stale = denied(transition(client, pipeline, key="helpdesk", to="production"))
    assert ("control_stale", "monitoring") in stale
    meet_every_control(client, pipeline, key="helpdesk", attester=approver)
    assert transition(client, pipeline, key="helpdesk", to="production").status_code == 201


def test_high_walk_needs_approval_and_a_pilot(
    client: TestClient, keys: dict[str, Headers], approvers: list[Headers], clock: FakeClock
) -> None:
    pipeline, approver = keys["pipeline"], keys["approver"]
    make_system(client, pipeline, key="lender", tier="high")
    pilot_gate = denied(transition(client, pipeline, key="lender", to="pilot"))
    assert {"risk_review", "human_oversight"} <= {control for _, control in pilot_gate}
    meet_every_control(client, pipeline, key="lender", attester=approver)
    assert transition(client, pipeline, key="lender", to="pilot").status_code == 201
    clock.advance(minutes=5)  # decisions count only when newer than the last transition

    assert denied(transition(client, pipeline, key="lender", to="production")) == {
        ("pilot_required", None),
        ("approvals_missing", None),
    }
    approve(client, approvers[0], key="lender", stage="production", decision="reject")
    assert ("approval_rejected", None) in denied(
        transition(client, pipeline, key="lender", to="production")
    )
    approve(client, approvers[0], key="lender", stage="production")
    # Approved now; only the pilot is missing.
    assert denied(transition(client, pipeline, key="lender", to="production")) == {
        ("pilot_required", None)
    }
    criteria = [{"metric": "precision", "op": ">=", "target": 0.9}]
    pilot = client.post(
        "/v1/systems/lender/pilots", json={"name": "p", "criteria": criteria}, headers=pipeline
    ).json()
    client.post(
        f"/v1/pilots/{pilot['id']}/results", json={"metrics": {"precision": 0.95}}, headers=pipeline
    )
    client.post(f"/v1/pilots/{pilot['id']}/conclude", headers=pipeline)
    moved = transition(client, pipeline, key="lender", to="production", expected_stage="pilot")
    assert moved.status_code == 201, moved.text


def test_critical_needs_distinct_approvers(
    client: TestClient,
    pipeline: Headers,
    approver: Headers,
    approvers: list[Headers],
    clock: FakeClock,
) -> None:
    make_system(client, pipeline, key="triage", tier="critical")
    meet_every_control(client, pipeline, key="triage", attester=approver)
    assert denied(transition(client, pipeline, key="triage", to="pilot")) == {
        ("approvals_missing", None)
    }
    approve(client, approvers[0], key="triage", stage="pilot")
    approve(client, approvers[0], key="triage", stage="production")
    approve(client, approvers[0], key="triage", stage="production")  # same approver twice
    assert transition(client, pipeline, key="triage", to="pilot").status_code == 201
    production = readiness(client, pipeline, key="triage")["gates"]["production"]["blocking"]
    # The pre-transition approvals lapsed with the move.
    assert {item["code"] for item in production} == {"pilot_required", "approvals_missing"}
    clock.advance(minutes=5)
    approve(client, approvers[0], key="triage", stage="production")
    approve(client, approvers[1], key="triage", stage="production")
    production = readiness(client, pipeline, key="triage")["gates"]["production"]["blocking"]
    assert {item["code"] for item in production} == {"pilot_required"}


def test_approvals_expire_with_the_policy_validity(
    client: TestClient,
    pipeline: Headers,
    approver: Headers,
    approvers: list[Headers],
    clock: FakeClock,
) -> None:
    make_system(client, pipeline, key="triage", tier="critical")
    meet_every_control(client, pipeline, key="triage", attester=approver)
    approve(client, approvers[0], key="triage", stage="pilot")
    clock.advance(days=29)
    assert readiness(client, pipeline, key="triage")["gates"]["pilot"]["ready"] is True
    clock.advance(days=1, seconds=1)
    gate = readiness(client, pipeline, key="triage")["gates"]["pilot"]
    assert gate["ready"] is False
    assert [item["code"] for item in gate["blocking"]] == ["approvals_missing"]


def test_override_is_admin_only_and_recorded(
    client: TestClient, keys: dict[str, Headers], viewer: Headers
) -> None:
    pipeline, admin = keys["pipeline"], keys["admin"]
    make_system(client, pipeline, key="lender", tier="high")
    override = {"justification": "Board decision 2026-03, see minutes #14"}
    for role in ("pipeline", "approver"):
        refused = transition(client, keys[role], key="lender", to="pilot", override=override)
        assert refused.status_code == 403, role
    short = transition(client, admin, key="lender", to="pilot", override={"justification": "ok"})
    assert short.status_code == 422
    forced = transition(client, admin, key="lender", to="pilot", override=override)
    assert forced.status_code == 201, forced.text
    body = forced.json()
    assert body["override"] == override
    assert {item["code"] for item in body["blocking"]} >= {"control_missing"}
    events = client.get("/v1/events", params={"type": "transition.recorded"}, headers=viewer)
    recorded = events.json()["items"][-1]["data"]
    assert recorded["override"] == override
    assert recorded["overridden"] == body["blocking"]


def test_invalid_moves_and_stage_conflicts(client: TestClient, pipeline: Headers) -> None:
    make_system(client, pipeline, key="drafty", tier="minimal")
    invalid = transition(client, pipeline, key="drafty", to="suspended")
    assert invalid.status_code == 409
    assert invalid.json()["type"].endswith("/invalid-transition")
    conflict = transition(client, pipeline, key="drafty", to="pilot", expected_stage="pilot")
    assert conflict.status_code == 409
    assert conflict.json()["type"].endswith("/stage-conflict")
    assert conflict.json()["current_stage"] == "proposed"
    assert transition(client, pipeline, key="drafty", to="retired").status_code == 201
    for stage in ("proposed", "pilot", "production", "suspended", "retired"):
        after = transition(client, pipeline, key="drafty", to=stage)
        assert after.json()["type"].endswith("/invalid-transition"), stage


def test_reason_is_required_and_viewer_cannot_move(
    client: TestClient, pipeline: Headers, viewer: Headers
) -> None:
    make_system(client, pipeline, key="drafty", tier="minimal")
    missing = client.post(
        "/v1/systems/drafty/transitions", json={"to_stage": "pilot"}, headers=pipeline
    )
    assert missing.status_code == 422
    assert transition(client, viewer, key="drafty", to="pilot").status_code == 403
    unknown = transition(client, pipeline, key="ghost-sys", to="pilot")
    assert unknown.status_code == 404


def test_transitions_list_and_release(client: TestClient, pipeline: Headers) -> None:
    make_system(client, pipeline, key="drafty", tier="minimal")
    release = {"version": "1.2.0", "uri": "https://registry.example.com/m/1"}
    transition(client, pipeline, key="drafty", to="pilot", release=release)
    transition(client, pipeline, key="drafty", to="proposed")
    listed = client.get("/v1/systems/drafty/transitions", headers=pipeline).json()["items"]
    assert [(item["from_stage"], item["to_stage"]) for item in listed] == [
        ("pilot", "proposed"),
        ("proposed", "pilot"),
    ]
    assert listed[1]["release"] == release
    assert listed[1]["policy_version"] == 1


def test_gate_checks_are_recorded(
    client: TestClient, pipeline: Headers, approver: Headers, viewer: Headers
) -> None:
    make_system(client, pipeline, key="lender", tier="high")
    check = client.post(
        "/v1/systems/lender/gate-checks",
        json={"target_stage": "pilot", "release": {"version": "3.0"}},
        headers=pipeline,
    )
    assert check.status_code == 200, check.text
    body = check.json()
    assert body["allowed"] is False
    assert body["move_valid"] is True
    assert body["required_score"] == 50
    assert ("control_missing", "risk_review") in {
        (item["code"], item["control"]) for item in body["blocking"]
    }
    meet_every_control(client, pipeline, key="lender", attester=approver)
    ok = client.post(
        "/v1/systems/lender/gate-checks", json={"target_stage": "pilot"}, headers=pipeline
    ).json()
    assert (ok["allowed"], ok["blocking"]) == (True, [])
    events = client.get("/v1/events", params={"type": "gate.checked"}, headers=viewer).json()
    assert [event["data"]["allowed"] for event in events["items"]] == [False, True]
    assert events["items"][0]["data"]["release"] == {"version": "3.0", "uri": None}


def test_stage_at_a_moment(
    client: TestClient, pipeline: Headers, approver: Headers, clock: FakeClock
) -> None:
    created = clock.now
    make_system(client, pipeline, key="drafty", tier="minimal")
    meet_every_control(client, pipeline, key="drafty", attester=approver)
    clock.advance(days=1)
    to_pilot = clock.now
    transition(client, pipeline, key="drafty", to="pilot", release={"version": "1.0"})
    clock.advance(days=1)
    to_production = clock.now
    transition(client, pipeline, key="drafty", to="production", release={"version": "1.1"})
    clock.advance(days=1)

    def at(moment: Any) -> Any:
        return client.get(
            "/v1/systems/drafty/stage", params={"at": moment.isoformat()}, headers=pipeline
        )

    before = at(created + timedelta(hours=1)).json()
    assert (before["stage"], before["release"]) == ("proposed", None)
    between = at(to_pilot + timedelta(hours=1)).json()
    assert (between["stage"], between["release"]["version"]) == ("pilot", "1.0")
    assert at(to_pilot).json()["stage"] == "pilot"
    after = at(to_production + timedelta(hours=1)).json()
    assert (after["stage"], after["release"]["version"]) == ("production", "1.1")
    assert at(created - timedelta(days=1)).status_code == 404
    assert at(created.replace(tzinfo=None)).status_code == 422


def test_critical_walk_to_production(
    client: TestClient,
    keys: dict[str, Headers],
    approvers: list[Headers],
    clock: FakeClock,
) -> None:
    pipeline, approver = keys["pipeline"], keys["approver"]
    make_system(client, pipeline, key="care-bot", tier="critical")
    pilot_gate = denied(transition(client, pipeline, key="care-bot", to="pilot"))
    assert {"fallback_process", "approval_path"} <= {control for _, control in pilot_gate}
    meet_every_control(client, pipeline, key="care-bot", attester=approver)
    approve(client, approvers[0], key="care-bot", stage="pilot")
    assert transition(client, pipeline, key="care-bot", to="pilot").status_code == 201
    clock.advance(minutes=1)

    criteria = [{"metric": "recall", "op": ">=", "target": 0.95, "key": True}]
    pilot = client.post(
        "/v1/systems/care-bot/pilots",
        json={"name": "ward 3", "criteria": criteria},
        headers=pipeline,
    ).json()
    client.post(
        f"/v1/pilots/{pilot['id']}/results", json={"metrics": {"recall": 0.97}}, headers=pipeline
    )
    client.post(f"/v1/pilots/{pilot['id']}/conclude", headers=pipeline)
    assert denied(transition(client, pipeline, key="care-bot", to="production")) == {
        ("approvals_missing", None)
    }
    approve(client, approvers[0], key="care-bot", stage="production")
    approve(client, approvers[1], key="care-bot", stage="production", decision="reject")
    assert denied(transition(client, pipeline, key="care-bot", to="production")) == {
        ("approvals_missing", None),
        ("approval_rejected", None),
    }
    approve(client, approvers[1], key="care-bot", stage="production")

    clock.advance(days=31)  # approvals lapse after 30 days ...
    assert denied(transition(client, pipeline, key="care-bot", to="production")) == {
        ("approvals_missing", None)
    }
    clock.advance(days=60)  # ... and critical-tier evidence after 90
    stale = denied(transition(client, pipeline, key="care-bot", to="production"))
    assert ("control_stale", "monitoring") in stale
    assert ("score_below_threshold", None) in stale

    meet_every_control(client, pipeline, key="care-bot", attester=approver)
    for approver in approvers:
        approve(client, approver, key="care-bot", stage="production")
    moved = transition(client, pipeline, key="care-bot", to="production", expected_stage="pilot")
    assert moved.status_code == 201, moved.text
