"""The loader of readiness inputs: a batch reads what one system at a time reads, and inputs
judged again after a move equal a load after it."""

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.models import System, Transition
from app.policies.service import active_rules
from app.readiness.inputs import load_inputs
from tests.conftest import FakeClock, auth
from tests.factories import approve, make_system, meet_every_control, record_evidence, transition

Headers = dict[str, str]


@pytest.fixture
def loaded_at(client: TestClient, admin: Headers, clock: FakeClock) -> datetime:
    """Systems with every kind of input, some with none; returns the time to load them at,
    which is behind the newest approval (as on a replica whose clock runs behind)."""
    start = clock.now
    approvers = []
    for name in ("risk-office", "service-owner"):
        body = {"name": name, "role": "approver"}
        approvers.append(auth(client.post("/v1/api-keys", json=body, headers=admin).json()["key"]))

    make_system(client, admin, key="care-bot", tier="critical")
    meet_every_control(client, admin, key="care-bot")
    override = {"justification": "pilot approved by the board outside this service"}
    assert transition(client, admin, key="care-bot", to="pilot", override=override).is_success
    clock.now = start + timedelta(minutes=2)
    approve(client, approvers[0], key="care-bot", stage="production")
    approve(client, approvers[1], key="care-bot", stage="production", decision="reject")
    approve(client, approvers[0], key="care-bot", stage="pilot", decision="reject")
    approve(client, approvers[0], key="care-bot", stage="pilot")
    clock.now = start + timedelta(minutes=5)
    approve(client, approvers[1], key="care-bot", stage="pilot")

    clock.now = start
    make_system(client, admin, key="helpdesk", tier="limited")
    record_evidence(client, admin, key="helpdesk", control="data_rules", status="partial")
    waivers = (("monitoring", 10), ("monitoring", 30), ("training", 10), ("support_plan", 60))
    for control, minutes in waivers:
        waiver = {
            "control": control,
            "justification": "Being rebuilt this month",
            "expires_at": (start + timedelta(minutes=minutes)).isoformat(),
        }
        granted = client.post("/v1/systems/helpdesk/waivers", json=waiver, headers=admin)
        assert granted.status_code == 201, granted.text
    revoked = granted.json()["id"]  # the support_plan waiver
    assert client.delete(f"/v1/systems/helpdesk/waivers/{revoked}", headers=admin).is_success

    make_system(client, admin, key="drafty", tier="minimal")
    meet_every_control(client, admin, key="drafty")
    assert transition(client, admin, key="drafty", to="pilot").is_success
    criteria = [{"metric": "precision", "op": ">=", "target": 0.9}]
    pilot = client.post(
        "/v1/systems/drafty/pilots", json={"name": "p", "criteria": criteria}, headers=admin
    ).json()
    result = {"metrics": {"precision": 0.95}, "findings": ["missing_training", "weak_ownership"]}
    assert client.post(f"/v1/pilots/{pilot['id']}/results", json=result, headers=admin).is_success
    assert client.post(f"/v1/pilots/{pilot['id']}/conclude", headers=admin).is_success

    make_system(client, admin, key="bare", tier="high")
    return start + timedelta(minutes=3)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session
        session.rollback()


def systems_of(session: Session) -> list[System]:
    return list(session.exec(select(System).order_by(col(System.id))))


def test_a_batch_loads_what_each_system_loads_alone(session: Session, loaded_at: datetime) -> None:
    systems = systems_of(session)
    policy = active_rules(session)
    together = load_inputs(session, systems, policy, loaded_at)
    assert together == {
        system.id: load_inputs(session, [system], policy, loaded_at)[system.id]
        for system in systems
    }
    # Every kind of input is there to compare, in some system and not in another.
    for read in (
        lambda inputs: inputs.evidence,
        lambda inputs: inputs.waivers,
        lambda inputs: inputs.decisions,
        lambda inputs: inputs.moved_at,
        lambda inputs: inputs.pilot,
        lambda inputs: inputs.findings,
    ):
        assert {bool(read(inputs)) for inputs in together.values()} == {True, False}


@pytest.mark.parametrize(
    "after",
    [
        timedelta(0),
        timedelta(minutes=1),  # before the newest approval, which still counts after the move
        timedelta(minutes=15),  # past the first waivers' end
        timedelta(days=31),  # past every waiver and the approvals' validity
    ],
)
def test_inputs_judged_after_a_move_equal_a_load_after_it(
    session: Session, loaded_at: datetime, after: timedelta
) -> None:
    systems = systems_of(session)
    policy = active_rules(session)
    before = load_inputs(session, systems, policy, loaded_at)
    at = loaded_at + after
    for system in systems:
        assert system.id is not None
        session.add(
            Transition(
                system_id=system.id,
                from_stage=system.stage,
                to_stage=system.stage,
                reason="a move",
                score=0,
                policy_version=1,
                blocking=[],
                actor_name="test",
                occurred_at=at,
            )
        )
    session.flush()
    validity = policy.rules.approval_validity_days
    judged = {
        system_id: inputs.moved(at=at, approval_validity_days=validity)
        for system_id, inputs in before.items()
    }
    assert judged == load_inputs(session, systems, policy, at)
