from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import Session, select

from app.controls.catalogue import CONTROL_KEYS, EVIDENCE_CONTROLS
from app.models import Evidence, System
from tests.conftest import FakeClock
from tests.factories import (
    blocking_codes,
    confirm_tier,
    make_system,
    meet_every_control,
    readiness,
    record_evidence,
)


def test_answer_shape_and_tier_rule(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-a", tier="limited", oversight="fully_automated")
    answer = readiness(client, viewer, key="sys-a")
    assert answer["system_key"] == "sys-a"
    assert answer["stage"] == "proposed"
    assert answer["risk_tier"] == "high"
    assert answer["risk_tier_rule"]["rule"] == "fully_automated"
    assert answer["policy_version"] == 1
    assert [control["control"] for control in answer["controls"]] == list(CONTROL_KEYS)
    assert set(answer["gates"]) == {"pilot", "production"}
    for gate in answer["gates"].values():
        assert {"ready", "required_score", "blocking"} <= gate.keys()


def test_new_high_tier_system_lists_every_missing_piece(
    client: TestClient, pipeline: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-h", tier="high")
    answer = readiness(client, pipeline, key="sys-h")
    # purpose, owner and scope are met: 3 of 17 controls.
    assert answer["score"] == 17.6
    assert answer["level"] == "not_ready"
    assert blocking_codes(answer, "pilot") == {
        ("score_below_threshold", None),
        ("control_missing", "data_rules"),
        ("control_missing", "access_boundaries"),
        ("control_missing", "risk_review"),
        ("control_missing", "human_oversight"),
    }
    production = blocking_codes(answer, "production")
    assert ("pilot_required", None) in production
    assert ("approvals_missing", None) in production
    assert {code for code, _ in production} == {
        "score_below_threshold",
        "control_missing",
        "pilot_required",
        "approvals_missing",
        "classification_unconfirmed",
    }


def test_full_evidence_high_tier_is_production_ready_but_gate_waits_for_pilot(
    client: TestClient, pipeline: dict[str, str], approver: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-f", tier="high")
    meet_every_control(client, pipeline, key="sys-f", attester=approver)
    answer = readiness(client, pipeline, key="sys-f")
    assert answer["score"] == 100.0
    assert answer["gates"]["pilot"] == {"ready": True, "required_score": 50.0, "blocking": []}
    assert blocking_codes(answer, "production") == {
        ("pilot_required", None),
        ("approvals_missing", None),
    }
    # The pilot rule still blocks, so the level stops at pilot_ready.
    assert answer["level"] == "pilot_ready"


def test_minimal_tier_reaches_production_ready(
    client: TestClient, pipeline: dict[str, str], approver: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-m", tier="minimal")
    for control in ("data_rules", "access_boundaries", "support_plan"):
        record_evidence(client, pipeline, key="sys-m", control=control)
    answer = readiness(client, pipeline, key="sys-m")
    assert answer["score"] == round(100 * 6 / 17, 1)
    assert [item["code"] for item in answer["gates"]["production"]["blocking"]] == [
        "score_below_threshold",
        "classification_unconfirmed",
    ]
    for control in ("data_quality", "monitoring", "testing_evidence"):
        record_evidence(client, pipeline, key="sys-m", control=control)
    answer = readiness(client, pipeline, key="sys-m")
    assert answer["score"] == 52.9
    # The evidence is all there; what is left is a person's confirmation of the tier.
    assert answer["level"] == "production_ready"
    assert blocking_codes(answer, "production") == {("classification_unconfirmed", None)}
    confirm_tier(client, approver, key="sys-m")
    assert readiness(client, pipeline, key="sys-m")["gates"]["production"]["ready"] is True


def test_partial_and_not_applicable(client: TestClient, pipeline: dict[str, str]) -> None:
    make_system(client, pipeline, key="sys-p", tier="limited")
    record_evidence(client, pipeline, key="sys-p", control="data_rules", status="partial")
    record_evidence(
        client,
        pipeline,
        key="sys-p",
        control="training",
        status="not_applicable",
        summary="no users",
    )
    answer = readiness(client, pipeline, key="sys-p")
    # 3 met + 0.5 partial over 16 applicable controls
    assert answer["score"] == round(100 * 3.5 / 16, 1)
    controls = {control["control"]: control for control in answer["controls"]}
    assert controls["training"]["status"] == "not_applicable"
    assert controls["training"]["points"] is None
    assert controls["data_rules"]["points"] == 0.5
    assert ("control_partial", "data_rules") in blocking_codes(answer, "pilot")


def test_evidence_goes_stale_with_time_alone(
    client: TestClient, pipeline: dict[str, str], clock: FakeClock
) -> None:
    make_system(client, pipeline, key="sys-s", tier="critical")
    record_evidence(client, pipeline, key="sys-s", control="data_rules")
    expires = clock.now + timedelta(days=10)
    record_evidence(
        client, pipeline, key="sys-s", control="monitoring", expires_at=expires.isoformat()
    )
    before = readiness(client, pipeline, key="sys-s")
    assert before["valid_until"] == expires.isoformat().replace("+00:00", "Z")
    statuses = {c["control"]: c["status"] for c in before["controls"]}
    assert (statuses["data_rules"], statuses["monitoring"]) == ("met", "met")

    clock.advance(days=10)  # monitoring expires
    middle = {
        c["control"]: c["status"] for c in readiness(client, pipeline, key="sys-s")["controls"]
    }
    assert (middle["data_rules"], middle["monitoring"]) == ("met", "stale")

    clock.advance(days=81)  # critical tier: evidence older than 90 days is stale
    after = readiness(client, pipeline, key="sys-s")
    assert {c["control"]: c["status"] for c in after["controls"]}["data_rules"] == "stale"
    assert ("control_stale", "data_rules") in blocking_codes(after, "pilot")
    assert after["score"] < before["score"]


def test_patch_of_a_field_control_changes_readiness(
    client: TestClient, pipeline: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-o", tier="minimal")
    assert readiness(client, pipeline, key="sys-o")["gates"]["pilot"]["ready"] is True
    client.patch("/v1/systems/sys-o", json={"owner": None}, headers=pipeline)
    answer = readiness(client, pipeline, key="sys-o")
    assert answer["gates"]["pilot"]["ready"] is False
    assert ("control_missing", "owner") in blocking_codes(answer, "pilot")


def test_history_records_a_snapshot_per_input_change(
    client: TestClient, pipeline: dict[str, str], clock: FakeClock
) -> None:
    make_system(client, pipeline, key="sys-y", tier="minimal")
    clock.advance(hours=1)
    record_evidence(client, pipeline, key="sys-y", control="data_rules")
    clock.advance(hours=1)
    client.patch("/v1/systems/sys-y", json={"scope": None}, headers=pipeline)
    history = client.get("/v1/systems/sys-y/readiness/history", headers=pipeline).json()
    scores = [item["score"] for item in history["items"]]
    assert scores == [round(100 * 3 / 17, 1), round(100 * 4 / 17, 1), round(100 * 3 / 17, 1)]
    assert all(item["policy_version"] == 1 for item in history["items"])
    times = [item["recorded_at"] for item in history["items"]]
    assert times == sorted(times, reverse=True)
    page = client.get(
        "/v1/systems/sys-y/readiness/history", params={"limit": 2}, headers=pipeline
    ).json()
    rest = client.get(
        "/v1/systems/sys-y/readiness/history",
        params={"cursor": page["next_cursor"]},
        headers=pipeline,
    ).json()
    assert len(page["items"]) == 2
    assert len(rest["items"]) == 1


def test_readiness_of_unknown_system_is_404(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.get("/v1/systems/ghost-sys/readiness", headers=viewer)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def _count_statements(app: FastAPI, action: Any) -> int:
    engines = {app.state.database.read_engine, app.state.database.write_engine}
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
    return len(statements)


def test_readiness_read_cost_does_not_grow_with_history(
    app: FastAPI, client: TestClient, pipeline: dict[str, str], clock: FakeClock
) -> None:
    make_system(client, pipeline, key="few-ver", tier="critical")
    make_system(client, pipeline, key="many-ver", tier="critical")
    record_evidence(client, pipeline, key="few-ver", control="monitoring")
    # Many versions, written directly: 10,000 through the API would only slow the test.
    versions = 715  # x 14 evidence controls: 10,010 versions
    with Session(app.state.database.write_engine) as session:
        system = session.exec(select(System).where(System.key == "many-ver")).one()
        session.add_all(
            Evidence(
                system_id=system.id,
                control=control,
                version=version,
                status="met",
                recorded_at=clock.now,
                is_current=version == versions,
            )
            for control in EVIDENCE_CONTROLS
            for version in range(1, versions + 1)
        )
        session.commit()
    record_evidence(client, pipeline, key="many-ver", control="monitoring")

    def read(key: str) -> Any:
        return lambda: readiness(client, pipeline, key=key)

    # Warm-up: the first request of a key also refreshes its last_used_at.
    readiness(client, pipeline, key="few-ver")
    stored = (_count_statements(app, read("few-ver")), _count_statements(app, read("many-ver")))
    assert stored[0] == stored[1]

    # Past the evidence's validity the read re-evaluates; it still costs the same.
    clock.advance(days=91)
    readiness(client, pipeline, key="few-ver")
    fresh = (_count_statements(app, read("few-ver")), _count_statements(app, read("many-ver")))
    assert fresh[0] == fresh[1]
    assert fresh[0] > stored[0]  # the re-evaluation path really ran
