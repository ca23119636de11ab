"""Where a rule of the service can be stated in JSON Schema, the document states it: a body
the document calls valid is one the service takes, and one it refuses the service refuses."""

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

Headers = dict[str, str]


def _validator(app: FastAPI, name: str) -> Draft202012Validator:
    document = app.openapi()
    # The document itself as the resource `#/components/schemas/...` refers into.
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:doc", resource)
    return Draft202012Validator({"$ref": f"urn:doc#/components/schemas/{name}"}, registry=registry)


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"name": "ops", "role": "admin", "teams": ["claims-platform"]}, False),
        ({"name": "ops", "role": "admin", "teams": None}, True),
        ({"name": "ops", "role": "admin"}, True),
        ({"name": "ci", "role": "pipeline", "teams": ["claims-platform"]}, True),
        ({"name": "ci", "role": "viewer"}, True),
    ],
)
def test_the_document_and_the_service_agree_on_scoped_admin_keys(
    app: FastAPI, client: TestClient, admin: Headers, body: dict[str, Any], valid: bool
) -> None:
    assert _validator(app, "ApiKeyCreate").is_valid(body) is valid
    response = client.post("/v1/api-keys", json=body, headers=admin)
    assert response.status_code == (201 if valid else 422), response.text
