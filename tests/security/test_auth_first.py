"""A request without valid credentials is 401 before anything reads its body, whatever the
body: a caller without a key learns nothing of what a body must look like (which fields, which
limits), and the service spends nothing parsing what nobody may send."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from tests.factories import make_system
from tests.security.bodies import BASE_BODIES, url

BAD_BODIES: list[Any] = [
    pytest.param(b"{not json", id="malformed JSON"),
    pytest.param(b'{"unknown": 1}', id="unknown field"),
    pytest.param(b"[" * 5000 + b"]" * 5000, id="deeply nested"),
    pytest.param(b'"\\u0000"', id="a NUL string"),
    pytest.param(b"\xff\xfe", id="not UTF-8"),
    pytest.param(b"", id="empty"),
]
CREDENTIALS: list[Any] = [
    pytest.param({}, id="no key"),
    pytest.param({"Authorization": "Bearer rdy_not_a_key"}, id="unknown key"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="another scheme"),
    pytest.param({"Authorization": "Bearer a.b.c"}, id="not a token of a trusted issuer"),
]
OPERATIONS = [pytest.param(method, path, id=f"{method} {path}") for method, path in BASE_BODIES]


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_without_valid_credentials_any_body_is_401(
    client: TestClient, method: str, path: str, body: bytes, credentials: dict[str, str]
) -> None:
    response = client.request(
        method,
        url(path),
        content=body,
        headers={**credentials, "Content-Type": "application/json"},
    )
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_write_still_looks_its_key_up_once(client: TestClient, admin: dict[str, str]) -> None:
    # Authenticating before the body must not cost a second lookup: the route's dependency
    # answers with the caller found first.
    make_system(client, admin, key="drafty", tier="minimal")
    lookups: list[str] = []

    def record(*args: Any) -> None:
        if "FROM api_keys" in args[2] and "key_hash" in args[2]:
            lookups.append(args[2])

    event.listen(Engine, "before_cursor_execute", record)
    try:
        response = client.put(
            "/v1/systems/drafty/evidence/training", json={"status": "met"}, headers=admin
        )
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert response.status_code in (200, 201), response.text
    assert len(lookups) == 1, lookups
