"""What a transition stores: it evaluates its gate and the answer after the move from one
load of the inputs, and the stored answer must be what a fresh evaluation at the moment of
the move answers."""

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.lifecycle.stages import GateStage
from app.models import ReadinessSnapshot, System
from app.readiness import service as readiness_service
from tests.conftest import FakeClock
from tests.factories import approve, make_system, meet_every_control, record_evidence, transition

Headers = dict[str, str]


def moved(client: TestClient, headers: Headers, *, key: str, to: str, **fields: Any) -> datetime:
    """Moves the system and returns the time the move was stamped with."""
    response = transition(client, headers, key=key, to=to, **fields)
    assert response.status_code == 201, response.text
    return datetime.fromisoformat(response.json()["occurred_at"])


def assert_stored_is_fresh(engine: Engine, key: str, at: datetime) -> dict[str, Any]:
    """The stored answer, its columns and the newest snapshot equal a fresh evaluation at
    `at`, the moment of the move; returns the stored answer."""
    with Session(engine) as session:
        system = session.exec(select(System).where(System.key == key)).one()
        evaluation, fresh = readiness_service.evaluate_now(session, system, now=at)
        snapshot = session.exec(
            select(ReadinessSnapshot)
            .where(ReadinessSnapshot.system_id == system.id)
            .order_by(col(ReadinessSnapshot.id).desc())
            .limit(1)
        ).one()
        assert system.readiness_document is not None
        stored: dict[str, Any] = json.loads(system.readiness_document)
        assert stored == json.loads(fresh.model_dump_json())
        summary = (
            evaluation.score,
            evaluation.level.value,
            evaluation.gates[GateStage.pilot].ready,
            evaluation.gates[GateStage.production].ready,
            fresh.policy_version,
        )
        columns = (
            system.score,
            system.level,
            system.pilot_ready,
            system.production_ready,
            system.readiness_policy_version,
        )
        assert columns == summary
        assert system.readiness_valid_until == evaluation.valid_until
        assert (
            snapshot.score,
            snapshot.level,
            snapshot.pilot_ready,
            snapshot.production_ready,
            snapshot.policy_version,
        ) == summary
        assert snapshot.recorded_at == at
        return stored


def codes(answer: dict[str, Any], gate: str) -> set[tuple[str, str | None]]:
    return {(item["code"], item.get("control")) for item in answer["gates"][gate]["blocking"]}


def test_approvals_given_before_a_move_lapse_in_the_stored_answer_rejects_stand(
    client: TestClient,
    engine: Engine,
    pipeline: Headers,
    approver: Headers,
    approvers: list[Headers],
    clock: FakeClock,
) -> None:
    make_system(client, pipeline, key="care-bot", tier="critical")
    meet_every_control(client, pipeline, key="care-bot", attester=approver)
    approve(client, approvers[0], key="care-bot", stage="pilot")
    approve(client, approvers[0], key="care-bot", stage="production")
    approve(client, approvers[1], key="care-bot", stage="production", decision="reject")
    clock.advance(minutes=1)
    at = moved(client, pipeline, key="care-bot", to="pilot")

    stored = assert_stored_is_fresh(engine, "care-bot", at)
    assert stored["stage"] == "pilot"
    assert codes(stored, "production") == {
        ("pilot_required", None),
        ("approval_rejected", None),
        ("approvals_missing", None),
    }
    # The pilot gate's approval lapsed too: moving back needs no gate, coming back does.
    assert ("approvals_missing", None) in codes(stored, "pilot")


def test_a_move_stamped_after_its_request_stores_the_answer_as_of_the_stamp(
    client: TestClient,
    engine: Engine,
    pipeline: Headers,
    approver: Headers,
    admin: Headers,
    clock: FakeClock,
) -> None:
    """A replica whose clock runs behind stamps its move at the last move's time: the
    inputs it loaded at its own time are judged again at the stamp (a waiver that ended in
    between is gone, an approval newer than the stamp counts)."""
    start = clock.now
    make_system(client, pipeline, key="helpdesk", tier="limited")
    for control in ("data_rules", "access_boundaries", "training"):
        record_evidence(client, pipeline, key="helpdesk", control=control)
    waiver = {
        "control": "monitoring",
        "justification": "Dashboards are being rebuilt this week",
        "expires_at": (start + timedelta(minutes=10)).isoformat(),
    }
    granted = client.post("/v1/systems/helpdesk/waivers", json=waiver, headers=approver)
    assert granted.status_code == 201, granted.text
    clock.now = start + timedelta(minutes=15)
    approve(client, approver, key="helpdesk", stage="production")
    clock.now = start + timedelta(minutes=20)
    first = moved(client, pipeline, key="helpdesk", to="pilot")
    assert first == clock.now
    clock.now = start + timedelta(minutes=25)
    approve(client, admin, key="helpdesk", stage="production")
    pilot = client.post(
        "/v1/systems/helpdesk/pilots",
        json={"name": "one team", "criteria": [{"metric": "precision", "op": ">=", "target": 0.9}]},
        headers=pipeline,
    ).json()
    result = {"metrics": {"precision": 0.95}, "findings": ["missing_training"]}
    assert client.post(
        f"/v1/pilots/{pilot['id']}/results", json=result, headers=pipeline
    ).is_success

    clock.now = start + timedelta(minutes=5)  # behind the first move, the waiver still on
    second = moved(client, pipeline, key="helpdesk", to="proposed")
    assert second == first

    stored = assert_stored_is_fresh(engine, "helpdesk", second)
    statuses = {item["control"]: item["status"] for item in stored["controls"]}
    assert statuses["monitoring"] == "missing"
    assert ("open_finding", "training") in codes(stored, "production")


def test_a_move_without_a_gate_and_an_override_store_fresh_answers(
    client: TestClient, engine: Engine, pipeline: Headers, admin: Headers, clock: FakeClock
) -> None:
    make_system(client, pipeline, key="lender", tier="high")
    override = {"justification": "Board decision 2026-03, see minutes #14"}
    forced = moved(client, admin, key="lender", to="pilot", override=override)
    assert assert_stored_is_fresh(engine, "lender", forced)["stage"] == "pilot"
    clock.advance(hours=1)
    back = moved(client, pipeline, key="lender", to="proposed")
    assert assert_stored_is_fresh(engine, "lender", back)["stage"] == "proposed"


@pytest.fixture
def input_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many systems each load of readiness inputs read, in order."""
    loads: list[int] = []
    load_inputs: Callable[..., Any] = readiness_service.load_inputs

    def counted(session: Any, systems: list[System], *args: Any, **kwargs: Any) -> Any:
        loads.append(len(systems))
        return load_inputs(session, systems, *args, **kwargs)

    monkeypatch.setattr(readiness_service, "load_inputs", counted)
    return loads


def test_a_transition_and_a_gate_check_load_the_inputs_once(
    client: TestClient, pipeline: Headers, input_loads: list[int]
) -> None:
    make_system(client, pipeline, key="drafty", tier="minimal")
    input_loads.clear()
    check = client.post(
        "/v1/systems/drafty/gate-checks", json={"target_stage": "pilot"}, headers=pipeline
    )
    assert (check.status_code, input_loads) == (200, [1])
    # A gated move, one its gate denies, and one without a gate.
    for to, status in (("pilot", 201), ("production", 409), ("proposed", 201)):
        input_loads.clear()
        response = transition(client, pipeline, key="drafty", to=to)
        assert (response.status_code, input_loads) == (status, [1]), to
