"""Approvers are people, and an approval counts only while the identity that gave it may
still approve: keys name their person, two keys of one person count once, and revoking a
key takes back at once what its approvals and waivers gave, in every worker, in the stored
answers too. Evidence the key recorded stays."""

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.config import Settings
from app.controls.catalogue import EVIDENCE_CONTROLS
from app.main import create_app
from tests.conftest import ADMIN_SECRET, FakeClock, auth
from tests.factories import (
    approve,
    make_system,
    meet_every_control,
    problem,
    readiness,
    record_evidence,
    system_body,
    transition,
)

Headers = dict[str, str]


def new_key(
    client: TestClient, admin: Headers, *, name: str, person: str | None = None
) -> tuple[int, Headers]:
    body: dict[str, Any] = {"name": name, "role": "approver"}
    if person is not None:
        body["person"] = person
    response = client.post("/v1/api-keys", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["id"], auth(response.json()["key"])


def revoke(client: TestClient, admin: Headers, key_id: int) -> None:
    response = client.delete(f"/v1/api-keys/{key_id}", headers=admin)
    assert response.status_code == 204, response.text


def gate_codes(client: TestClient, headers: Headers, key: str, stage: str) -> set[str]:
    check = client.post(
        f"/v1/systems/{key}/gate-checks", json={"target_stage": stage}, headers=headers
    )
    assert check.status_code == 200, check.text
    return {item["code"] for item in check.json()["blocking"]}


def ready_for_pilot_but_approval(
    client: TestClient, pipeline: Headers, attester: Headers, key: str
) -> None:
    """A critical system whose pilot gate lacks only its one approval."""
    make_system(client, pipeline, key=key, tier="critical")
    meet_every_control(client, pipeline, key=key, attester=attester)
    assert gate_codes(client, pipeline, key, "pilot") == {"approvals_missing"}


@pytest.fixture
def second_worker(database_url: str, clock: FakeClock, client: TestClient) -> Iterator[TestClient]:
    """Another worker process's app on the same database, as a deployment runs several."""
    other = create_app(
        Settings(
            database_url=database_url,
            readiness_bootstrap_admin_key=ADMIN_SECRET,  # type: ignore[arg-type]
            readiness_mirror_warmup=False,
            readiness_expiry_events=False,
            readiness_webhook_dispatch=False,
        ),
        clock=clock,
    )
    try:
        with TestClient(other, raise_server_exceptions=False) as other_client:
            yield other_client
    finally:
        other.state.database.dispose()


# Revoked keys


def test_a_revoked_keys_approval_stops_counting_at_once_in_every_worker(
    client: TestClient,
    second_worker: TestClient,
    admin: Headers,
    pipeline: Headers,
    approver: Headers,
) -> None:
    ready_for_pilot_but_approval(client, pipeline, approver, "triage")
    key_id, risk_office = new_key(client, admin, name="risk-office")
    approve(client, risk_office, key="triage", stage="pilot")
    # Both workers count it.
    assert gate_codes(client, pipeline, "triage", "pilot") == set()
    assert gate_codes(second_worker, pipeline, "triage", "pilot") == set()

    revoke(client, admin, key_id)

    assert gate_codes(second_worker, pipeline, "triage", "pilot") == {"approvals_missing"}
    refused = transition(second_worker, pipeline, key="triage", to="pilot")
    problem(refused, 409, "gate-denied")
    assert {item["code"] for item in refused.json()["blocking"]} == {"approvals_missing"}
    # Another approver's approval is what lets it move now.
    approve(client, approver, key="triage", stage="pilot")
    assert transition(client, pipeline, key="triage", to="pilot").status_code == 201


def test_the_approvals_list_marks_approvals_of_revoked_keys(
    client: TestClient, admin: Headers, pipeline: Headers, approver: Headers
) -> None:
    make_system(client, pipeline, key="triage", tier="critical")
    key_id, risk_office = new_key(client, admin, name="risk-office")
    given = approve(client, risk_office, key="triage", stage="production")
    assert given["revoked"] is False
    approve(client, approver, key="triage", stage="production")
    revoke(client, admin, key_id)
    listed = client.get("/v1/systems/triage/approvals", headers=pipeline).json()["items"]
    assert [(item["approver"]["name"], item["revoked"]) for item in listed] == [
        ("approver-key", False),
        ("risk-office", True),
    ]


def test_a_revoked_keys_reject_still_blocks(
    client: TestClient, admin: Headers, pipeline: Headers, approver: Headers
) -> None:
    """Revoking a key never opens a gate: its approvals and waivers stop counting, its
    rejects stand until its person approves with another key (or an admin overrides)."""
    ready_for_pilot_but_approval(client, pipeline, approver, "triage")
    key_id, ann = new_key(client, admin, name="ann-laptop", person="ann@example.com")
    approve(client, ann, key="triage", stage="pilot", decision="reject")
    revoke(client, admin, key_id)
    approve(client, approver, key="triage", stage="pilot")
    assert gate_codes(client, pipeline, "triage", "pilot") == {"approval_rejected"}
    _, ann_again = new_key(client, admin, name="ann-new-laptop", person="ann@example.com")
    approve(client, ann_again, key="triage", stage="pilot")
    assert gate_codes(client, pipeline, "triage", "pilot") == set()


def test_a_stolen_keys_approval_does_not_outlast_its_revocation_or_bury_its_persons_reject(
    client: TestClient, admin: Headers, pipeline: Headers, approver: Headers
) -> None:
    ready_for_pilot_but_approval(client, pipeline, approver, "triage")
    _, desk = new_key(client, admin, name="ann-desk", person="ann@example.com")
    stolen_id, stolen = new_key(client, admin, name="ann-laptop", person="ann@example.com")
    approve(client, desk, key="triage", stage="pilot", decision="reject")
    approve(client, approver, key="triage", stage="pilot")
    # The thief's approve is Ann's latest decision while the key stands...
    approve(client, stolen, key="triage", stage="pilot")
    assert gate_codes(client, pipeline, "triage", "pilot") == set()
    revoke(client, admin, stolen_id)
    # ...and once it is revoked, what Ann said with her own key is her say again.
    assert gate_codes(client, pipeline, "triage", "pilot") == {"approval_rejected"}


def test_a_revoked_keys_waivers_stop_counting_and_its_evidence_stays(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    make_system(client, pipeline, key="helpdesk", tier="limited")
    key_id, risk_office = new_key(client, admin, name="risk-office")
    later = "2026-04-01T00:00:00Z"
    body = {"control": "training", "justification": "Refresh booked", "expires_at": later}
    waiver = client.post("/v1/systems/helpdesk/waivers", json=body, headers=risk_office)
    assert waiver.status_code == 201, waiver.text
    assert waiver.json()["granted_by_revoked"] is False
    record_evidence(client, risk_office, key="helpdesk", control="risk_review")

    revoke(client, admin, key_id)

    controls = {
        item["control"]: item["status"]
        for item in readiness(client, pipeline, key="helpdesk")["controls"]
    }
    assert controls["training"] == "missing"
    assert controls["risk_review"] == "met"
    listed = client.get("/v1/systems/helpdesk/waivers", headers=pipeline).json()["items"]
    assert [
        (item["active"], item["granted_by_revoked"], item["revoked_at"]) for item in listed
    ] == [(False, True, None)]
    # Attributable in history: the evidence names the key that recorded it.
    current = client.get("/v1/systems/helpdesk/evidence", headers=pipeline).json()["items"]
    assert [(item["control"], item["recorded_by"]) for item in current] == [("risk_review", key_id)]


def _stored(engine: Engine, key: str) -> tuple[bool, int]:
    with engine.connect() as connection:
        ready, snapshots = connection.execute(
            text(
                "SELECT pilot_ready, (SELECT count(*) FROM readiness_snapshots r"
                " WHERE r.system_id = systems.id) FROM systems WHERE key = :key"
            ),
            {"key": key},
        ).one()
    return bool(ready), snapshots


def test_revoking_a_key_stores_again_the_answers_that_counted_it_and_no_others(
    client: TestClient,
    admin: Headers,
    pipeline: Headers,
    approver: Headers,
    engine: Engine,
    clock: FakeClock,
) -> None:
    ready_for_pilot_but_approval(client, pipeline, approver, "triage")
    ready_for_pilot_but_approval(client, pipeline, approver, "other")
    make_system(client, pipeline, key="helpdesk", tier="limited")
    key_id, risk_office = new_key(client, admin, name="risk-office")
    approve(client, risk_office, key="triage", stage="pilot")
    expires = (clock.now + timedelta(days=10)).isoformat()
    body = {"control": "data_rules", "justification": "Agreed with the DPO", "expires_at": expires}
    assert client.post("/v1/systems/helpdesk/waivers", json=body, headers=risk_office).is_success
    for control in ("access_boundaries", "data_quality"):
        record_evidence(client, pipeline, key="helpdesk", control=control)
    approve(client, approver, key="other", stage="pilot")
    before = {key: _stored(engine, key) for key in ("triage", "helpdesk", "other")}
    assert all(ready for ready, _ in before.values())

    revoke(client, admin, key_id)

    after = {key: _stored(engine, key) for key in ("triage", "helpdesk", "other")}
    assert after["triage"] == (False, before["triage"][1] + 1)
    assert after["helpdesk"] == (False, before["helpdesk"][1] + 1)
    assert after["other"] == before["other"]
    # What reads serve from the stored answer says so too.
    listed = client.get("/v1/systems", params={"ready_for": "pilot"}, headers=pipeline).json()
    assert [item["key"] for item in listed["items"]] == ["other"]
    # Revoking again stores nothing.
    revoke(client, admin, key_id)
    assert _stored(engine, "triage") == after["triage"]


# People


def test_keys_carry_their_person(client: TestClient, admin: Headers) -> None:
    body = {"name": "ann-laptop", "role": "approver", "person": "ann@example.com"}
    created = client.post("/v1/api-keys", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["person"] == "ann@example.com"
    listed = client.get("/v1/api-keys", headers=admin).json()["items"]
    assert [(item["name"], item["person"]) for item in listed] == [
        ("bootstrap-admin", None),
        ("ann-laptop", "ann@example.com"),
    ]
    for person in ("", "x" * 201, 42):
        refused = client.post("/v1/api-keys", json={**body, "person": person}, headers=admin)
        assert refused.status_code == 422, person
    assert client.post("/v1/api-keys", json={**body, "person": "x" * 200}, headers=admin).is_success


def test_two_keys_of_one_person_count_as_one_approver(
    client: TestClient, admin: Headers, pipeline: Headers, approver: Headers
) -> None:
    make_system(client, pipeline, key="triage", tier="critical")  # production: 2 approvers
    _, laptop = new_key(client, admin, name="ann-laptop", person="ann@example.com")
    # Compared case-insensitively, as mail systems compare addresses in practice.
    _, desk = new_key(client, admin, name="ann-desk", person="Ann@Example.COM")
    approve(client, laptop, key="triage", stage="production")
    approve(client, desk, key="triage", stage="production")
    assert "approvals_missing" in gate_codes(client, pipeline, "triage", "production")
    # Keys without a person are each their own approver, as before.
    approve(client, approver, key="triage", stage="production")
    assert "approvals_missing" not in gate_codes(client, pipeline, "triage", "production")


def test_a_persons_latest_decision_counts_whichever_key_gave_it(
    client: TestClient, admin: Headers, pipeline: Headers, approver: Headers
) -> None:
    ready_for_pilot_but_approval(client, pipeline, approver, "triage")
    _, laptop = new_key(client, admin, name="ann-laptop", person="ann@example.com")
    _, desk = new_key(client, admin, name="ann-desk", person="ann@example.com")
    approve(client, laptop, key="triage", stage="pilot", decision="reject")
    assert gate_codes(client, pipeline, "triage", "pilot") == {
        "approval_rejected",
        "approvals_missing",
    }
    approve(client, desk, key="triage", stage="pilot")
    assert gate_codes(client, pipeline, "triage", "pilot") == set()
    approve(client, laptop, key="triage", stage="pilot", decision="reject")
    assert "approval_rejected" in gate_codes(client, pipeline, "triage", "pilot")


# Approvals racing the revocation of their key

RACING_SYSTEMS = 6


@pytest.mark.slow
def test_no_stored_answer_counts_a_key_revoked_while_it_was_approving(
    live_server: str, engine: Engine
) -> None:
    """Approvals with a key land while an admin revokes it: each approval commits before
    the revocation (which then stores its system again) or is refused with 401 after it, so
    no stored answer is left counting the revoked key."""
    admin = auth(ADMIN_SECRET)
    keys = [f"race-{n}" for n in range(RACING_SYSTEMS)]
    with httpx.Client(base_url=live_server, timeout=60) as http:
        for key in keys:
            body = system_body(key=key, tier="critical")
            assert http.post("/v1/systems", json=body, headers=admin).status_code == 201
            for control in EVIDENCE_CONTROLS:
                put = http.put(
                    f"/v1/systems/{key}/evidence/{control}", json={"status": "met"}, headers=admin
                )
                assert put.status_code == 200, put.text
        made = http.post(
            "/v1/api-keys", json={"name": "racer", "role": "approver"}, headers=admin
        ).json()
    racer = auth(made["key"])
    barrier = threading.Barrier(RACING_SYSTEMS + 1)
    statuses: list[int] = []

    def approve_one(key: str) -> None:
        with httpx.Client(base_url=live_server, timeout=60) as http:
            barrier.wait()
            response = http.post(
                f"/v1/systems/{key}/approvals",
                json={"target_stage": "pilot", "decision": "approve"},
                headers=racer,
            )
        statuses.append(response.status_code)

    def revoke_it() -> None:
        with httpx.Client(base_url=live_server, timeout=60) as http:
            barrier.wait()
            assert http.delete(f"/v1/api-keys/{made['id']}", headers=admin).status_code == 204

    threads = [threading.Thread(target=approve_one, args=(key,)) for key in keys]
    threads.append(threading.Thread(target=revoke_it))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert len(statuses) == RACING_SYSTEMS
    assert set(statuses) <= {201, 401}
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT key, pilot_ready FROM systems")).all()
    assert {key: bool(ready) for key, ready in rows} == dict.fromkeys(keys, False)
