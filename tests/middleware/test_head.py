"""HEAD on every GET operation answers as GET does, without the body: the operations are
generated from the OpenAPI document, so a new GET route is covered as soon as it exists."""

import http.client
import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.policies.service import DEFAULT_POLICY_VERSION
from tests.factories import make_system, meet_every_control, record_evidence, transition

DOCUMENT = create_app().openapi()
GET_PATHS = [path for path, operations in DOCUMENT["paths"].items() if "get" in operations]
# Headers of one delivery, not of the answer.
PER_DELIVERY = {"date", "x-request-id"}
SYSTEM = "head-sys"


@pytest.fixture
def pilot_id(client: TestClient, admin: dict[str, str]) -> int:
    """A system in stage pilot with evidence, a transition and a running pilot, so the
    GET operations have something to answer with."""
    make_system(client, admin, key=SYSTEM, tier="minimal")
    meet_every_control(client, admin, key=SYSTEM)
    record_evidence(client, admin, key=SYSTEM, control="risk_review", summary="second")
    override = {"justification": "approved outside this test"}
    assert transition(client, admin, key=SYSTEM, to="pilot", override=override).is_success
    criteria = [{"metric": "precision", "op": ">=", "target": 0.9, "warning": 0.8}]
    created = client.post(
        f"/v1/systems/{SYSTEM}/pilots",
        json={"name": "two weeks", "criteria": criteria},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    pilot: int = created.json()["id"]
    return pilot


def concrete(path: str, pilot_id: int) -> str:
    values = {
        "key": SYSTEM,
        "control": "risk_review",
        "version": str(DEFAULT_POLICY_VERSION),
        "pilot_id": str(pilot_id),
        "webhook_id": "1",
    }
    return re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], path)


def answer_headers(headers: Any) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in PER_DELIVERY}


def test_head_answers_like_get_without_a_body_on_every_get_operation(
    client: TestClient, viewer: dict[str, str], pilot_id: int
) -> None:
    assert len(GET_PATHS) >= 20
    # Served without being declared: the document has no HEAD operations.
    assert not [path for path, operations in DOCUMENT["paths"].items() if "head" in operations]
    statuses = {}
    for path in GET_PATHS:
        url = concrete(path, pilot_id)
        got = client.get(url, headers=viewer)
        head = client.head(url, headers=viewer)
        assert head.status_code == got.status_code, (path, head.status_code, got.status_code)
        assert head.content == b"", path
        expected = answer_headers(got.headers)
        if path == "/metrics":
            # The scrape counts requests, this GET among them: its length moves on each call.
            assert int(head.headers["content-length"]) > 0
            del expected["content-length"]
            assert {
                k: v for k, v in answer_headers(head.headers).items() if k != "content-length"
            } == (expected)
        else:
            assert answer_headers(head.headers) == expected, path
            assert int(head.headers["content-length"]) == len(got.content), path
        statuses[path] = got.status_code
    # The GETs answered for real (the viewer may not list keys or webhooks, nor verify the
    # audit trail): a HEAD of a 200 is compared.
    admin_only = {
        "/v1/api-keys",
        "/v1/audit/verify",
        "/v1/webhooks",
        "/v1/webhooks/{webhook_id}/deliveries",
    }
    assert {path for path, status in statuses.items() if status != 200} == admin_only
    assert {statuses[path] for path in admin_only} == {403}


def test_405_lists_head_wherever_get_is_allowed(client: TestClient) -> None:
    response = client.delete("/v1/systems")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    # Where GET is not allowed, HEAD is not either.
    head = client.head("/v1/systems/head-sys/gate-checks")
    got = client.get("/v1/systems/head-sys/gate-checks")
    assert (head.status_code, got.status_code) == (405, 405)
    assert head.headers["allow"] == got.headers["allow"] == "POST"
    assert head.content == b""


def test_head_is_logged_as_head_with_its_route(
    client: TestClient, viewer: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    client.head("/v1/controls", headers={**viewer, "X-Request-ID": "head-1"})
    (line,) = [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "app.access" and "head-1" in record.getMessage()
    ]
    assert (line["method"], line["route"], line["status"]) == ("HEAD", "/v1/controls", 200)


def test_a_real_server_sends_no_body_and_keeps_the_connection(
    live_server: str, viewer: dict[str, str], pilot_id: int
) -> None:
    address = urlsplit(live_server)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        for path in ("/v1/controls", f"/v1/systems/{SYSTEM}/readiness", "/v1/nothing-here"):
            connection.request("HEAD", path, headers=viewer)
            head = connection.getresponse()
            head_length = head.getheader("content-length")
            assert head.read() == b""
            # Any body sent after the HEAD would be read as the start of this answer.
            connection.request("GET", path, headers=viewer)
            got = connection.getresponse()
            body = got.read()
            assert (head.status, head_length) == (got.status, str(len(body))), path
            assert head.getheader("content-type") == got.getheader("content-type")
    finally:
        connection.close()
