"""The route-by-role matrix, generated from the OpenAPI document so every operation, including
future ones, is checked: each declares the lowest role it allows (`x-required-role`, derived
from the route's dependencies), every role below it gets 403, and that role itself gets past
the role check. The 401 half lives in test_security.py."""

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth.roles import Role
from app.main import create_app
from app.openapi_docs import WEBHOOK_SIGNATURE_EXTENSION

EXTENSION = "x-required-role"
DOCUMENT = create_app().openapi()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, items in DOCUMENT["paths"].items()
    for method, operation in items.items()
]


def concrete_path(path: str, operation: dict[str, Any]) -> str:
    """A path that routes: ids no row has, so nothing is changed when a role passes."""
    kinds = {
        parameter["name"]: parameter.get("schema", {}).get("type")
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    return re.sub(
        r"\{(\w+)\}",
        lambda match: "999999" if kinds.get(match.group(1)) == "integer" else "no-such-thing",
        path,
    )


def name(value: Any) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=name)
def test_every_operation_that_needs_a_key_declares_its_role(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    if WEBHOOK_SIGNATURE_EXTENSION in operation:
        # Signed by its sender instead: no key, so no role (test_security.py checks its 401).
        assert EXTENSION not in operation, (method, path)
        assert operation["security"] == [], (method, path)
    elif path.startswith("/v1/") or operation.get("security"):
        assert operation.get(EXTENSION) in {role.value for role in Role}, (method, path)


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        op
        for op in OPERATIONS
        if EXTENSION not in op[2] and WEBHOOK_SIGNATURE_EXTENSION not in op[2]
    ],
    ids=name,
)
def test_operations_without_a_role_answer_without_a_key(
    client: TestClient, method: str, path: str, operation: dict[str, Any]
) -> None:
    response = client.request(method, concrete_path(path, operation))
    assert response.status_code not in (401, 403), (method, path, response.text)


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [op for op in OPERATIONS if EXTENSION in op[2]],
    ids=name,
)
def test_roles_below_the_minimum_get_403(
    client: TestClient,
    keys: dict[str, dict[str, str]],
    method: str,
    path: str,
    operation: dict[str, Any],
) -> None:
    needed = Role(operation[EXTENSION])
    url = concrete_path(path, operation)
    for role in Role:
        response = client.request(method, url, headers=keys[role.value], json={})
        if role.allows(needed):
            assert response.status_code not in (401, 403), (role, method, path, response.text)
            continue
        assert response.status_code == 403, (role, method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "/problems/forbidden"
        assert problem["status"] == 403
        assert problem["required_role"] == needed.value
