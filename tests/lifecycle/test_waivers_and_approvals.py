from datetime import timedelta

from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from tests.factories import make_system, readiness

Headers = dict[str, str]


def status_of(client: TestClient, headers: Headers, key: str, control: str) -> str:
    controls = readiness(client, headers, key=key)["controls"]
    status: str = next(item["status"] for item in controls if item["control"] == control)
    return status


def waive(client: TestClient, headers: Headers, key: str, control: str, expires: str):  # type: ignore[no-untyped-def]
    body = {"control": control, "justification": "Training refresh booked", "expires_at": expires}
    return client.post(f"/v1/systems/{key}/waivers", json=body, headers=headers)


def test_waiver_counts_as_waived_until_it_expires(
    client: TestClient, keys: dict[str, Headers], clock: FakeClock
) -> None:
    pipeline, approver = keys["pipeline"], keys["approver"]
    make_system(client, pipeline, key="helpdesk", tier="limited")
    expires = clock.now + timedelta(days=10)
    granted = waive(client, approver, "helpdesk", "data_rules", expires.isoformat())
    assert granted.status_code == 201, granted.text
    assert granted.json()["active"] is True
    assert granted.json()["granted_by"]["name"] == "approver-key"
    answer = readiness(client, pipeline, key="helpdesk")
    assert status_of(client, pipeline, "helpdesk", "data_rules") == "waived"
    assert ("control_missing", "data_rules") not in {
        (item["code"], item["control"]) for item in answer["gates"]["pilot"]["blocking"]
    }
    clock.advance(days=10)
    assert status_of(client, pipeline, "helpdesk", "data_rules") == "missing"
    listed = client.get("/v1/systems/helpdesk/waivers", headers=pipeline).json()["items"]
    assert [item["active"] for item in listed] == [False]


def test_waiver_revocation_is_recorded(client: TestClient, keys: dict[str, Headers]) -> None:
    pipeline, approver = keys["pipeline"], keys["approver"]
    make_system(client, pipeline, key="helpdesk", tier="limited")
    waiver = waive(client, approver, "helpdesk", "training", "2026-04-01T00:00:00Z").json()
    assert status_of(client, pipeline, "helpdesk", "training") == "waived"
    revoked = client.delete(f"/v1/systems/helpdesk/waivers/{waiver['id']}", headers=approver)
    assert revoked.status_code == 204
    assert status_of(client, pipeline, "helpdesk", "training") == "missing"
    listed = client.get("/v1/systems/helpdesk/waivers", headers=pipeline).json()["items"]
    assert listed[0]["revoked_by"]["name"] == "approver-key"
    events = client.get("/v1/events", params={"system": "helpdesk"}, headers=pipeline).json()
    kinds = [(event["type"], event["actor"]["name"]) for event in events["items"]]
    assert ("waiver.granted", "approver-key") in kinds
    assert ("waiver.revoked", "approver-key") in kinds
    missing = client.delete("/v1/systems/helpdesk/waivers/999", headers=approver)
    assert missing.status_code == 404


def test_waiver_rules(client: TestClient, keys: dict[str, Headers], clock: FakeClock) -> None:
    pipeline, approver = keys["pipeline"], keys["approver"]
    make_system(client, pipeline, key="lender", tier="high")
    later = (clock.now + timedelta(days=30)).isoformat()
    not_waivable = waive(client, approver, "lender", "human_oversight", later)
    assert not_waivable.status_code == 422
    assert not_waivable.json()["type"].endswith("/control-not-waivable")
    too_long = waive(
        client, approver, "lender", "training", (clock.now + timedelta(days=91)).isoformat()
    )
    assert too_long.status_code == 422
    past = waive(
        client, approver, "lender", "training", (clock.now - timedelta(days=1)).isoformat()
    )
    assert past.status_code == 422
    unknown = waive(client, approver, "lender", "vibes", later)
    assert unknown.status_code == 422
    ninety = waive(
        client, approver, "lender", "training", (clock.now + timedelta(days=90)).isoformat()
    )
    assert ninety.status_code == 201


def test_viewer_and_pipeline_cannot_approve_or_waive(
    client: TestClient, keys: dict[str, Headers]
) -> None:
    make_system(client, keys["pipeline"], key="lender", tier="high")
    for role in ("viewer", "pipeline"):
        approval = client.post(
            "/v1/systems/lender/approvals",
            json={"target_stage": "production", "decision": "approve"},
            headers=keys[role],
        )
        assert approval.status_code == 403, role
        assert (
            waive(client, keys[role], "lender", "training", "2026-04-01T00:00:00Z").status_code
            == 403
        )
    for role in ("approver", "admin"):
        approval = client.post(
            "/v1/systems/lender/approvals",
            json={"target_stage": "production", "decision": "approve", "comment": "ok"},
            headers=keys[role],
        )
        assert approval.status_code == 201, role
    listed = client.get("/v1/systems/lender/approvals", headers=keys["viewer"]).json()["items"]
    assert [(item["approver"]["name"], item["decision"]) for item in listed] == [
        ("bootstrap-admin", "approve"),
        ("approver-key", "approve"),
    ]
