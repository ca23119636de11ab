"""Security headers (OWASP API8:2023) on every response: successes, every kind of error,
routes outside /v1, and answers that middleware gives before any route runs."""

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.factories import make_system, system_body

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}

Call = Callable[[TestClient, dict[str, str]], Any]


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


def _new_key(client: TestClient, headers: dict[str, str]) -> int:
    created = client.post(
        "/v1/api-keys", json={"name": "short-lived", "role": "viewer"}, headers=headers
    )
    key_id: int = created.json()["id"]
    return key_id


CALLS: dict[str, tuple[int, Call]] = {
    "200 read": (200, lambda c, h: c.get("/v1/controls", headers=h)),
    "201 create": (201, lambda c, h: c.post("/v1/systems", json=system_body(key="new"), headers=h)),
    "204 revoke": (204, lambda c, h: c.delete(f"/v1/api-keys/{_new_key(c, h)}", headers=h)),
    "400 malformed json": (
        400,
        lambda c, h: c.post("/v1/systems", content=b"{", headers=_json(h)),
    ),
    "400 forged cursor": (400, lambda c, h: c.get("/v1/events?after=garbage!!", headers=h)),
    "401 no key": (401, lambda c, _h: c.get("/v1/controls")),
    "401 unknown key": (
        401,
        lambda c, _h: c.get("/v1/controls", headers={"Authorization": "Bearer rdy_nope"}),
    ),
    "404 unknown route": (404, lambda c, h: c.get("/v1/nothing-here", headers=h)),
    "404 unknown root route": (404, lambda c, _h: c.get("/nothing-here")),
    "404 unknown system": (404, lambda c, h: c.get("/v1/systems/ghost-sys", headers=h)),
    "405 method": (405, lambda c, h: c.delete("/v1/events", headers=h)),
    "409 conflict": (
        409,
        lambda c, h: c.post("/v1/systems", json=system_body(key="sec-sys"), headers=h),
    ),
    "412 if-match": (
        412,
        lambda c, h: c.patch(
            "/v1/systems/sec-sys", json={"name": "B"}, headers={**h, "If-Match": '"9"'}
        ),
    ),
    "413 too large": (
        413,
        lambda c, h: c.post("/v1/systems", content=b" " * (1024 * 1024 + 1), headers=_json(h)),
    ),
    "422 validation": (422, lambda c, h: c.post("/v1/systems", json={}, headers=h)),
    "400 bad idempotency key": (
        400,
        lambda c, h: c.post("/v1/systems", json={}, headers={**h, "Idempotency-Key": "x" * 300}),
    ),
    "healthz": (200, lambda c, _h: c.get("/healthz")),
    "readyz": (200, lambda c, _h: c.get("/readyz")),
    "metrics": (200, lambda c, _h: c.get("/metrics")),
    "openapi.json": (200, lambda c, _h: c.get("/openapi.json")),
    "docs": (200, lambda c, _h: c.get("/docs")),
}


def assert_security_headers(response: Any, path: str) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))
    assert response.headers.get("x-request-id")
    if path.startswith("/v1/"):
        # Answers depend on the caller's key: never kept by a shared cache.
        assert response.headers.get("cache-control") == "no-store"


@pytest.mark.parametrize("name", list(CALLS))
def test_every_kind_of_response_carries_the_security_headers(
    client: TestClient, admin: dict[str, str], name: str
) -> None:
    make_system(client, admin, key="sec-sys")
    status, call = CALLS[name]
    response = call(client, admin)
    assert response.status_code == status, response.text
    assert_security_headers(response, response.request.url.path)


def test_replayed_responses_carry_them_too(client: TestClient, admin: dict[str, str]) -> None:
    headers = {**admin, "Idempotency-Key": "replay-1"}
    client.post("/v1/systems", json=system_body(key="replayed"), headers=headers)
    replay = client.post("/v1/systems", json=system_body(key="replayed"), headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert_security_headers(replay, "/v1/systems")
    # Stored headers are replayed, then the middleware adds its own: never twice.
    assert len(replay.headers.get_list("x-content-type-options")) == 1


def test_unexpected_errors_carry_them_too(app: FastAPI, client: TestClient) -> None:
    def explode() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/v1/boom", explode)
    response = client.get("/v1/boom")
    assert response.status_code == 500
    assert_security_headers(response, "/v1/boom")
