"""Checks generated from the OpenAPI document, so every route, including future ones, is
covered: no route under /v1 answers without a valid key."""

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import auth

SAMPLE = {
    "key": "some-system",
    "control": "training",
    "pilot_id": "1",
    "key_id": "1",
    "version": "1",
    "waiver_id": "1",
}


def operations() -> list[tuple[str, str]]:
    document = create_app().openapi()
    return [
        (method.upper(), re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path))
        for path, items in document["paths"].items()
        for method in items
        if path.startswith("/v1/")
    ]


@pytest.mark.parametrize(("method", "path"), operations())
def test_every_v1_route_needs_a_valid_key(client: TestClient, method: str, path: str) -> None:
    for headers in ({}, auth("rdy_not_a_key")):
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_security_headers(client: TestClient, viewer: dict[str, str]) -> None:
    api = client.get("/v1/controls", headers=viewer)
    assert api.headers["x-content-type-options"] == "nosniff"
    assert api.headers["x-frame-options"] == "DENY"
    assert api.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in api.headers  # CORS stays off
    assert client.get("/healthz").headers["x-content-type-options"] == "nosniff"


def test_metrics(app: FastAPI, client: TestClient, admin: dict[str, str]) -> None:
    from tests.factories import make_system

    make_system(client, admin, key="drafty", tier="minimal")
    make_system(client, admin, key="lender", tier="high")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'readiness_systems{stage="proposed",tier="high"} 1' in text
    assert 'readiness_systems{stage="proposed",tier="minimal"} 1' in text
    assert 'readiness_score{system="lender",tier="high",stage="proposed"} 17.6' in text
    assert (
        'readiness_gate_ready{system="drafty",tier="minimal",stage="proposed",gate="pilot"} 1'
        in text
    )
    assert (
        'readiness_gate_ready{system="lender",tier="high",stage="proposed",gate="pilot"} 0' in text
    )


def test_metrics_follow_time(client: TestClient, admin: dict[str, str], clock) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from tests.factories import make_system, record_evidence

    make_system(client, admin, key="drafty", tier="minimal")
    tomorrow = (clock.now + timedelta(days=1)).isoformat()
    for control in ("data_rules", "access_boundaries", "support_plan"):
        record_evidence(client, admin, key="drafty", control=control, expires_at=tomorrow)
    for control in ("monitoring", "training", "workflow"):
        record_evidence(client, admin, key="drafty", control=control)
    gauge = (
        'readiness_gate_ready{system="drafty",tier="minimal",stage="proposed",gate="production"}'
    )
    assert f"{gauge} 1" in client.get("/metrics").text
    clock.advance(days=2)
    assert f"{gauge} 0" in client.get("/metrics").text
