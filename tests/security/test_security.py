"""Checks generated from the OpenAPI document, so every route, including future ones, is
covered: no route under /v1, nor any other that declares the bearer scheme, answers without
a valid key."""

import re

import pytest
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
    "webhook_id": "1",
    "delivery_id": "1",
}


def operations() -> list[tuple[str, str]]:
    document = create_app().openapi()
    return [
        (method.upper(), re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path))
        for path, items in document["paths"].items()
        for method, operation in items.items()
        if path.startswith("/v1/") or operation.get("security")
    ]


@pytest.mark.parametrize(("method", "path"), operations())
def test_every_keyed_route_needs_a_valid_key(client: TestClient, method: str, path: str) -> None:
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
