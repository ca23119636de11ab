from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from tests.factories import (
    blocking_codes,
    confirm_tier,
    make_system,
    meet_every_control,
    record_evidence,
    transition,
)

Headers = dict[str, str]
OVERRIDE = {"justification": "Board decision, minute 7: ship before the audit"}


@pytest.fixture
def portfolio(client: TestClient, admin: Headers, clock: FakeClock) -> None:
    """Four systems whose report numbers are known by construction."""
    writing = {"team": "writing", "contact": "w@example.com"}
    make_system(client, admin, key="drafty", tier="minimal", owner=writing, labels={"env": "prod"})
    make_system(client, admin, key="helpdesk", tier="limited", owner=writing)
    tomorrow = (clock.now + timedelta(days=1)).isoformat()
    record_evidence(client, admin, key="helpdesk", control="monitoring", expires_at=tomorrow)

    make_system(client, admin, key="lender", tier="high")
    meet_every_control(client, admin, key="lender")
    assert transition(client, admin, key="lender", to="pilot").status_code == 201
    pilot = client.post(
        "/v1/systems/lender/pilots",
        json={
            "name": "branch trial",
            "planned_end": tomorrow,
            "criteria": [{"metric": "precision", "op": ">=", "target": 0.9}],
        },
        headers=admin,
    ).json()
    client.post(
        f"/v1/pilots/{pilot['id']}/results",
        json={"metrics": {"precision": 0.95}, "findings": ["missing_training"]},
        headers=admin,
    )

    make_system(client, admin, key="care", tier="critical")
    forced = transition(client, admin, key="care", to="production", override=OVERRIDE)
    assert forced.status_code == 201
    clock.advance(days=2)  # helpdesk's monitoring expires, lender's pilot overruns


def report(client: TestClient, headers: Headers, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/reports/portfolio", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_portfolio_numbers(client: TestClient, viewer: Headers, portfolio: None) -> None:
    body = report(client, viewer)
    assert body["systems"] == 4
    assert {(row["stage"], row["tier"]): row["systems"] for row in body["by_stage_and_tier"]} == {
        ("proposed", "minimal"): 1,
        ("proposed", "limited"): 1,
        ("pilot", "high"): 1,
        ("production", "critical"): 1,
    }
    assert body["ready_for_next_stage"] == 1  # drafty: proposed, pilot gate passes
    assert body["drifted"] == 1  # care: forced into production, gate failing
    pilot_gate = next(g for g in body["top_blocking_controls"] if g["gate"] == "pilot")
    by_control = {item["control"]: item["systems"] for item in pilot_gate["controls"]}
    assert by_control["data_rules"] == 2  # helpdesk and care
    assert "purpose" not in by_control
    assert (body["stale_evidence"], body["systems_with_stale_evidence"]) == (1, 1)
    assert [(p["system_key"], p["name"]) for p in body["stuck_pilots"]] == [
        ("lender", "branch trial")
    ]
    assert body["pilot_outcomes"] == {}
    assert body["findings"] == {"missing_training": 1}
    overrides = body["overrides_last_90_days"]
    assert [(o["system_key"], o["to_stage"], o["justification"]) for o in overrides] == [
        ("care", "production", OVERRIDE["justification"])
    ]
    # Stored scores: drafty 3/17, helpdesk 4/17 (as stored before its evidence expired:
    # reports count stored readiness), lender 17/17, care 3/17.
    assert body["average_score"] == round((17.6 + 23.5 + 100.0 + 17.6) / 4, 1)


def test_portfolio_filters(client: TestClient, viewer: Headers, portfolio: None) -> None:
    assert report(client, viewer, owner_team="writing")["systems"] == 2
    assert report(client, viewer, risk_tier="high")["findings"] == {"missing_training": 1}
    assert report(client, viewer, risk_tier="minimal")["findings"] == {}
    assert report(client, viewer, label="env:prod")["systems"] == 1
    assert report(client, viewer, label="env:dev")["systems"] == 0
    assert report(client, viewer, owner_team="writing")["stale_evidence"] == 1
    assert report(client, viewer, risk_tier="critical")["drifted"] == 1
    assert (
        client.get("/v1/reports/portfolio", params={"label": "bad"}, headers=viewer).status_code
        == 422
    )


def test_overrides_older_than_90_days_drop_out(
    client: TestClient, viewer: Headers, portfolio: None, clock: FakeClock
) -> None:
    clock.advance(days=91)
    assert report(client, viewer)["overrides_last_90_days"] == []


def test_drift_appears_when_time_passes(
    client: TestClient, admin: Headers, viewer: Headers, clock: FakeClock
) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    in_a_week = (clock.now + timedelta(days=7)).isoformat()
    for control in ("data_rules", "access_boundaries", "support_plan"):
        record_evidence(client, admin, key="drafty", control=control, expires_at=in_a_week)
    for control in ("monitoring", "training", "workflow"):
        record_evidence(client, admin, key="drafty", control=control)
    confirm_tier(client, admin, key="drafty")
    assert transition(client, admin, key="drafty", to="production").status_code == 201
    make_system(client, admin, key="care", tier="critical")
    transition(client, admin, key="care", to="production", override=OVERRIDE)

    drift = client.get("/v1/reports/drift", headers=viewer).json()
    assert [item["system_key"] for item in drift["items"]] == ["care"]
    assert report(client, viewer)["drifted"] == 1

    clock.advance(days=8)  # no write at all: drafty's evidence simply expired
    drift = client.get("/v1/reports/drift", headers=viewer).json()
    assert [item["system_key"] for item in drift["items"]] == ["drafty", "care"]
    drafty = drift["items"][0]
    assert ("control_stale", "data_rules") in {
        (b["code"], b["control"]) for b in drafty["blocking"]
    }
    assert report(client, viewer)["drifted"] == 2
    assert "\nreadiness_drifted_systems 2\n" in client.get("/metrics").text  # judged the same
    only_minimal = client.get("/v1/reports/drift", params={"risk_tier": "minimal"}, headers=viewer)
    assert [item["system_key"] for item in only_minimal.json()["items"]] == ["drafty"]
    first = client.get("/v1/reports/drift", params={"limit": 1}, headers=viewer).json()
    rest = client.get(
        "/v1/reports/drift", params={"limit": 1, "cursor": first["next_cursor"]}, headers=viewer
    ).json()
    assert [i["system_key"] for i in first["items"] + rest["items"]] == ["drafty", "care"]
    assert rest["next_cursor"] is None


def test_metrics_gauges_match_the_portfolio(client: TestClient, portfolio: None) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    families = {
        family.name: family
        for family in text_string_to_metric_families(client.get("/metrics").text)
    }

    def gauge(name: str) -> float:
        (sample,) = families[name].samples
        return sample.value

    assert gauge("readiness_drifted_systems") == 1  # care
    assert gauge("readiness_stale_evidence") == 1  # helpdesk's monitoring
    assert gauge("readiness_systems_with_stale_evidence") == 1
    assert gauge("readiness_stuck_pilots") == 1  # lender's branch trial
    blocking = {
        (sample.labels["gate"], sample.labels["control"]): sample.value
        for sample in families["readiness_blocking_control_systems"].samples
    }
    assert blocking[("pilot", "data_rules")] == 2  # as the portfolio counts: helpdesk and care


def test_gaps_count_what_blocks_the_systems_heading_for_each_gate(
    client: TestClient, viewer: Headers, portfolio: None
) -> None:
    response = client.get("/v1/reports/gaps", headers=viewer)
    assert response.status_code == 200, response.text
    gates = {gate["gate"]: gate for gate in response.json()["gates"]}

    pilot = gates["pilot"]
    assert (pilot["stages"], pilot["systems"]) == (["proposed"], 2)  # drafty and helpdesk
    assert pilot["systems_by_tier"] == {"minimal": 1, "limited": 1, "high": 0, "critical": 0}
    production = gates["production"]
    assert production["systems"] == 2  # lender (pilot) and care (production)
    assert production["systems_by_tier"] == {"minimal": 0, "limited": 0, "high": 1, "critical": 1}

    # Against each system's own answer: for the gate it heads for, each control blocking it.
    heading = {"drafty": "pilot", "helpdesk": "pilot", "lender": "production", "care": "production"}
    tiers = {"drafty": "minimal", "helpdesk": "limited", "lender": "high", "care": "critical"}
    expected: dict[tuple[str, str], dict[str, int]] = {}
    for key, gate in heading.items():
        answer = client.get(f"/v1/systems/{key}/readiness", headers=viewer).json()
        for control in {control for _, control in blocking_codes(answer, gate) if control}:
            by_tier = expected.setdefault((gate, control), {})
            by_tier[tiers[key]] = by_tier.get(tiers[key], 0) + 1
    reported = {
        (gate["gate"], gap["control"]): {tier: n for tier, n in gap["by_tier"].items() if n}
        for gate in gates.values()
        for gap in gate["controls"]
    }
    assert reported == expected
    # care, forced into production, never recorded data_rules.
    data_rules = next(gap for gap in production["controls"] if gap["control"] == "data_rules")
    assert (data_rules["systems"], data_rules["by_tier"]["critical"]) == (1, 1)
    assert data_rules["by_reason"] == {"control_missing": 1}
    counts = [gap["systems"] for gap in production["controls"]]
    assert counts == sorted(counts, reverse=True)

    only_writing = client.get("/v1/reports/gaps", params={"owner_team": "writing"}, headers=viewer)
    assert [gate["systems"] for gate in only_writing.json()["gates"]] == [2, 0]
