"""The audit trail is append-only through the API (OWASP API5:2023, broken function level
authorization): no route changes or deletes an event, and a full flow of every write only
ever appends, never sending an UPDATE or DELETE to the events table."""

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from app.policies.service import default_policy_document
from tests.conftest import FakeClock
from tests.factories import make_system, system_body, transition

PROBLEM = "application/problem+json"
Headers = dict[str, str]


def test_the_document_offers_only_reads_of_events(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    event_paths = [path for path in paths if path.startswith("/v1/events")]
    assert event_paths == ["/v1/events"]
    for path in event_paths:
        assert set(paths[path]) == {"get"}, path
    # The only deletions anywhere are revocations, which append an event of their own
    # (test_every_write_only_appends below), and webhook subscriptions, whose deletion
    # appends `webhook.deleted` (tests/webhooks/test_events.py).
    deletions = sorted(path for path, operations in paths.items() if "delete" in operations)
    assert deletions == [
        "/v1/api-keys/{key_id}",
        "/v1/systems/{key}/waivers/{waiver_id}",
        "/v1/webhooks/{webhook_id}",
    ]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_writes_to_the_event_log_are_405(client: TestClient, admin: Headers, method: str) -> None:
    for headers in ({}, admin):
        response = client.request(method, "/v1/events", headers=headers, json={"type": "x"})
        assert response.status_code == 405, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "/problems/method-not-allowed"
        assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_there_is_no_route_to_one_event(client: TestClient, admin: Headers, method: str) -> None:
    # No route serves a single event, so nothing there to change: 404, not 405.
    make_system(client, admin, key="drafty", tier="minimal")
    response = client.request(method, "/v1/events/1", headers=admin, json={"type": "x"})
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM


@pytest.fixture
def event_writes() -> Iterator[list[str]]:
    """Every statement any engine sends during the test that would change or drop events."""
    found: list[str] = []
    changes = re.compile(
        r"^\s*(UPDATE\s+\"?events\"?\b|DELETE\s+FROM\s+\"?events\"?\b|TRUNCATE\b|DROP\b|ALTER\b)",
        re.IGNORECASE,
    )

    def record(*args: Any) -> None:
        statement = args[2]
        if changes.search(statement):
            found.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield found
    event.remove(Engine, "before_cursor_execute", record)


def all_events(client: TestClient, headers: Headers) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 200}
    while True:
        page = client.get("/v1/events", params=params, headers=headers).json()
        if not page["items"]:
            return items
        items += page["items"]
        params["after"] = page["next_cursor"]


def test_every_write_only_appends(
    client: TestClient,
    keys: dict[str, Headers],
    clock: FakeClock,
    event_writes: list[str],
) -> None:
    admin, pipeline, approver = keys["admin"], keys["pipeline"], keys["approver"]
    seen = all_events(client, admin)

    def step(expect_new: bool, response: Any) -> Any:
        nonlocal seen
        now = all_events(client, admin)
        # What was there stays exactly as it was, in the same order; nothing is removed.
        assert now[: len(seen)] == seen, response.request.url
        assert len(now) > len(seen) if expect_new else len(now) == len(seen), (
            response.request.method,
            response.request.url,
            response.status_code,
        )
        seen = now
        return response

    soon = (clock.now + timedelta(days=10)).isoformat()
    policy = {**default_policy_document(), "description": "Audit flow", "activate": True}
    created = step(
        True, client.post("/v1/api-keys", json={"name": "t", "role": "viewer"}, headers=admin)
    )
    step(True, client.delete(f"/v1/api-keys/{created.json()['id']}", headers=admin))
    step(True, client.post("/v1/policies", json=policy, headers=admin))
    step(
        True,
        client.post(
            "/v1/systems", json=system_body(key="drafty", tier="minimal"), headers=pipeline
        ),
    )
    step(
        True,
        client.post("/v1/systems", json=system_body(key="lender", tier="high"), headers=pipeline),
    )
    step(True, client.patch("/v1/systems/drafty", json={"scope": "Drafts only."}, headers=pipeline))
    step(
        True,
        client.put(
            "/v1/systems/drafty/evidence/training", json={"status": "met"}, headers=pipeline
        ),
    )
    step(
        True,
        client.post(
            "/v1/systems/drafty/gate-checks", json={"target_stage": "pilot"}, headers=pipeline
        ),
    )
    step(
        True,
        client.post(
            "/v1/systems/lender/approvals",
            json={"target_stage": "pilot", "decision": "approve"},
            headers=approver,
        ),
    )
    waiver = step(
        True,
        client.post(
            "/v1/systems/lender/waivers",
            json={"control": "training", "justification": "Booked.", "expires_at": soon},
            headers=approver,
        ),
    )
    step(True, client.delete(f"/v1/systems/lender/waivers/{waiver.json()['id']}", headers=approver))
    step(True, transition(client, pipeline, key="drafty", to="pilot"))
    criteria = [{"metric": "precision", "op": ">=", "target": 0.9}]
    pilot = step(
        True,
        client.post(
            "/v1/systems/drafty/pilots", json={"name": "p", "criteria": criteria}, headers=pipeline
        ),
    )
    results = f"/v1/pilots/{pilot.json()['id']}/results"
    retry = {**pipeline, "Idempotency-Key": "result-1"}
    step(True, client.post(results, json={"metrics": {"precision": 0.95}}, headers=retry))
    # A replay does not do the work again, so it records nothing again.
    step(False, client.post(results, json={"metrics": {"precision": 0.95}}, headers=retry))
    step(True, client.post(f"/v1/pilots/{pilot.json()['id']}/conclude", headers=pipeline))
    # Refusals record nothing.
    step(False, client.post("/v1/systems", json=system_body(key="drafty"), headers=pipeline))
    step(False, client.post("/v1/systems", json={}, headers=pipeline))
    step(False, client.post(results, json={"metrics": {"precision": 0.5}}, headers=pipeline))
    step(False, transition(client, pipeline, key="lender", to="production"))
    step(False, client.delete("/v1/events", headers=admin))
    step(False, client.get("/v1/systems/drafty/readiness", headers=pipeline))
    clock.advance(days=400)
    step(False, client.get("/v1/reports/portfolio", headers=pipeline))

    assert event_writes == []
    assert [item["id"] for item in seen] == sorted(item["id"] for item in seen)
    assert {item["type"] for item in seen} >= {
        "api_key.created",
        "api_key.revoked",
        "policy.published",
        "system.created",
        "system.updated",
        "evidence.recorded",
        "gate.checked",
        "approval.recorded",
        "waiver.granted",
        "waiver.revoked",
        "transition.recorded",
        "pilot.created",
        "pilot.result_recorded",
        "pilot.concluded",
    }
