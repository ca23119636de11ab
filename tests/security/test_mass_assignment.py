"""Mass assignment (OWASP API3:2023, broken object property level authorization): no request
can set a field the server owns. Every request body refuses unknown fields (422 naming each,
`extra_forbidden`), so the server-owned fields of every resource, taken from the responses
in the OpenAPI document, are refused on every operation, and nothing is written."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.security.bodies import (
    BASE_BODIES,
    DOCUMENT,
    SCHEMAS,
    SYSTEM,
    Schemas,
    body_operations,
    field_errors,
    prepare,
    request_schema,
    url,
    with_value,
)

# A request or more per operation and field: hundreds in all.
pytestmark = pytest.mark.slow

# Names a client might try whatever the resource; the responses add each resource's own.
SERVER_OWNED = {
    "id",
    "stage",
    "risk_tier",
    "risk_tier_rule",
    "score",
    "level",
    "version",
    "created_at",
    "updated_at",
    "created_by",
    "recorded_at",
    "recorded_by",
    "system_key",
    "actor",
    "status",
    "outcome",
    "active",
    "key_hash",
    "key_prefix",
}


def _properties(schema: dict[str, Any]) -> set[str]:
    return set(SCHEMAS.resolve(schema).get("properties", {}))


def server_owned(method: str, path: str) -> list[str]:
    operation = DOCUMENT["paths"][path][method.lower()]
    names = set(SERVER_OWNED)
    for status, response in operation["responses"].items():
        if status.startswith("2") and "content" in response:
            schema = response["content"]["application/json"]["schema"]
            names |= _properties(schema)
            for sub in SCHEMAS.resolve(schema).get("properties", {}).values():
                names |= _properties(sub)  # e.g. the `result` a results POST answers
    return sorted(names - _properties(request_schema(operation)))


CASES = [
    pytest.param(method, path, name, id=f"{method} {path} {name}")
    for method, path in BASE_BODIES
    for name in server_owned(method, path)
]


def objects(
    schemas: Schemas, schema: dict[str, Any], value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """Every object with declared properties in a request body, with its path."""
    schema = schemas.resolve(schema)
    if schema.get("type") == "object":
        if "properties" in schema:
            yield path, schema
            for name, sub in schema["properties"].items():
                if isinstance(value, dict) and value.get(name) is not None:
                    yield from objects(schemas, sub, value[name], (*path, name))
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and isinstance(value, dict) and value:
            first = next(iter(value))
            yield from objects(schemas, values, value[first], (*path, first))
    elif schema.get("type") == "array" and isinstance(value, list) and value:
        yield from objects(schemas, schema.get("items", {}), value[0], (*path, 0))


def test_document_closes_every_request_object(app: FastAPI) -> None:
    schemas = Schemas(app.openapi())
    open_objects = [
        f"{method} {path} {'.'.join(map(str, where)) or '<body>'}"
        for method, path, operation in body_operations(app)
        for where, schema in objects(
            schemas, request_schema(operation), BASE_BODIES[(method, path)]
        )
        if schema.get("additionalProperties") is not False
    ]
    assert open_objects == []


@pytest.mark.parametrize(("method", "path", "name"), CASES)
def test_server_owned_fields_are_refused(
    client: TestClient, admin: dict[str, str], method: str, path: str, name: str
) -> None:
    body = {**BASE_BODIES[(method, path)], name: "2020-01-01T00:00:00Z"}
    errors = field_errors(client.request(method, url(path), json=body, headers=admin))
    assert {"field": name, "code": "extra_forbidden"}.items() <= errors[0].items(), errors
    assert len(errors) == 1, errors


def test_nested_objects_refuse_unknown_fields_too(
    client: TestClient, admin: dict[str, str]
) -> None:
    checked = 0
    for (method, path), body in BASE_BODIES.items():
        operation = DOCUMENT["paths"][path][method.lower()]
        for where, _schema in objects(SCHEMAS, request_schema(operation), body):
            if not where:
                continue
            changed = with_value(body, (*where, "id"), 7)
            errors = field_errors(client.request(method, url(path), json=changed, headers=admin))
            field = ".".join(map(str, (*where, "id")))
            assert [(e["field"], e["code"]) for e in errors] == [(field, "extra_forbidden")]
            checked += 1
    assert checked >= 8  # owner, release, override, criteria, source, tiers...


SYSTEM_FORGERIES: dict[str, Any] = {
    "id": 1,
    "stage": "production",
    "risk_tier": "minimal",
    "risk_tier_rule": {"rule": "declared", "detail": "forged"},
    "score": 100.0,
    "level": "production_ready",
    "pilot_ready": True,
    "production_ready": True,
    "version": 99,
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
}


def _events(client: TestClient, admin: dict[str, str]) -> int:
    return len(client.get("/v1/events", params={"limit": 200}, headers=admin).json()["items"])


def test_systems_refuse_forged_fields_on_create_and_write_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    before = _events(client, admin)
    body = BASE_BODIES[("POST", "/v1/systems")]
    for name, value in SYSTEM_FORGERIES.items():
        errors = field_errors(client.post("/v1/systems", json={**body, name: value}, headers=admin))
        assert [(e["field"], e["code"]) for e in errors] == [(name, "extra_forbidden")]
    everything = client.post("/v1/systems", json={**body, **SYSTEM_FORGERIES}, headers=admin)
    assert {e["field"] for e in field_errors(everything)} == set(SYSTEM_FORGERIES)
    assert client.get(f"/v1/systems/{body['key']}", headers=admin).status_code == 404
    assert _events(client, admin) == before


@pytest.mark.parametrize("media_type", ["application/merge-patch+json", "application/json"])
def test_systems_refuse_forged_fields_on_merge_patch_and_change_nothing(
    client: TestClient, admin: dict[str, str], media_type: str
) -> None:
    prepare(client, admin)
    original = client.get(f"/v1/systems/{SYSTEM}", headers=admin).json()
    before = _events(client, admin)
    headers = {**admin, "Content-Type": media_type}
    for name, value in {**SYSTEM_FORGERIES, "key": "renamed"}.items():
        for body in ({name: value}, {"name": "Renamed", name: value}):
            response = client.patch(
                f"/v1/systems/{SYSTEM}", content=json.dumps(body), headers=headers
            )
            errors = field_errors(response)
            assert [(e["field"], e["code"]) for e in errors] == [(name, "extra_forbidden")]
    assert client.get(f"/v1/systems/{SYSTEM}", headers=admin).json() == original
    assert _events(client, admin) == before


def test_declared_tier_raises_but_never_lowers_the_risk_tier(
    client: TestClient, admin: dict[str, str]
) -> None:
    # The one tier-related field a client sets: a floor, so it cannot talk a system down.
    body = {
        **BASE_BODIES[("POST", "/v1/systems")],
        "key": "lender",
        "declared_risk_tier": "minimal",
    }
    created = client.post("/v1/systems", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["risk_tier"] == "high"
    patched = client.patch("/v1/systems/lender", json={"impact_areas": ["drafting"]}, headers=admin)
    assert patched.json()["risk_tier"] == "minimal"
    raised = client.patch(
        "/v1/systems/lender", json={"declared_risk_tier": "critical"}, headers=admin
    )
    assert raised.json()["risk_tier"] == "critical"
