"""A valid body for every operation that takes one, setting every optional field, and a
walk over the OpenAPI document's request schemas that the bounds and mass-assignment tests
share. A test fails when an operation with a body is missing here, or a body misses a field
the document declares, so a new field or route cannot skip the table-driven checks."""

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.audit.signing import Signer
from app.integrations.kubernetes.schemas import REVIEW_EXAMPLE
from app.integrations.mlflow.schemas import ALIAS_CREATED_EXAMPLE
from app.main import create_app
from app.policies.service import default_policy_document
from tests.conftest import AUDIT_SEED
from tests.factories import make_system, system_body

PROBLEM = "application/problem+json"
SYSTEM = "drafty"
PATH_VALUES = {
    "key": SYSTEM,
    "control": "training",
    "pilot_id": "1",
    "webhook_id": "1",
    "delivery_id": "1",
}
# Long enough for an override (20 characters at least).
JUSTIFICATION = "Pushed through for the bounds tests, recorded as such."


def _policy() -> dict[str, Any]:
    document = default_policy_document()
    document["weights"] = {"training": 2.0}
    document["activate"] = False
    return document


def _checkpoint() -> dict[str, Any]:
    """A checkpoint of the empty log, signed with the test apps' key: one any log reaches."""
    signer = Signer.from_seed(AUDIT_SEED)
    signed_at = "2026-03-02T09:00:00Z"
    event_id, hash = 0, "0" * 64
    return {
        "event_id": event_id,
        "hash": hash,
        "signed_at": signed_at,
        "signature": signer.sign(f"{event_id}:{hash}:{signed_at}"),
        "key_id": signer.key_id,
    }


# Keyed by (method, path template); the order is one that every body is accepted in
# (`test_every_base_body_is_accepted`): the transition comes before the pilot it enables.
BASE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/api-keys"): {
        "name": "bounds-key",
        "role": "viewer",
        "teams": ["claims"],
        "person": "ann@example.com",
    },
    # A public address written out: the name of one would need DNS.
    ("POST", "/v1/webhooks"): {
        "url": "https://93.184.216.34/hooks/readiness",
        "event_types": ["gate.checked"],
        "description": "Bounds",
    },
    ("POST", "/v1/policies"): _policy(),
    ("POST", "/v1/systems"): system_body(
        key="base-sys",
        tier="high",
        description="A system registered with every field.",
        declared_risk_tier="high",
        labels={"domain": "claims"},
        external_ref="JIRA-1",
    ),
    ("PATCH", "/v1/systems/{key}"): {
        "name": "Drafty, renamed",
        "description": "Drafts release notes.",
        "purpose": "Draft release notes from merged pull requests.",
        "scope": "Drafts only; a human edits and publishes.",
        "owner": {"team": "dev-productivity", "contact": "devprod@example.com"},
        "impact_areas": ["drafting"],
        "oversight": "human_reviews_all",
        "declared_risk_tier": "minimal",
        "labels": {"domain": "docs"},
        "external_ref": "JIRA-2",
    },
    ("PUT", "/v1/systems/{key}/evidence/{control}"): {
        "status": "met",
        "summary": "Everyone trained.",
        "uri": "https://wiki.example.com/training",
        "expires_at": "2026-09-01T00:00:00Z",
        "release": "2.4.1",
    },
    ("POST", "/v1/systems/{key}/gate-checks"): {
        "target_stage": "pilot",
        "release": {"version": "1.0.0", "uri": "https://registry.example.com/m/1"},
    },
    ("POST", "/v1/systems/{key}/transitions"): {
        "to_stage": "pilot",
        "reason": "Pilot with the platform team",
        "expected_stage": "proposed",
        "release": {"version": "1.0.0", "uri": "https://registry.example.com/m/1"},
        "override": {"justification": JUSTIFICATION},
    },
    ("POST", "/v1/systems/{key}/classification"): {"tier": "minimal", "comment": "Reviewed."},
    ("POST", "/v1/systems/{key}/approvals"): {
        "target_stage": "production",
        "decision": "approve",
        "comment": "Looks fine.",
    },
    ("POST", "/v1/systems/{key}/waivers"): {
        "control": "training",
        "justification": "Training booked for next month.",
        "expires_at": "2026-04-01T00:00:00Z",
    },
    ("POST", "/v1/systems/{key}/pilots"): {
        "name": "Two sprints",
        "objective": "Less time on release notes",
        "planned_end": "2026-04-15T00:00:00Z",
        "release": "2.4.1",
        "criteria": [
            {
                "metric": "precision",
                "op": ">=",
                "target": 0.9,
                "warning": 0.8,
                "weight": 2.0,
                "key": True,
            }
        ],
    },
    ("POST", "/v1/pilots/{pilot_id}/results"): {
        "metrics": {"precision": 0.93},
        "sample_size": 12,
        "window_start": "2026-03-01T00:00:00Z",
        "window_end": "2026-03-02T00:00:00Z",
        "source": {"pipeline": "eval", "run_id": "118", "url": "https://ci.example.com/118"},
        "findings": ["missing_training"],
    },
    ("POST", "/v1/audit/verify"): _checkpoint(),
}


# Bodies of a format another system defines, which the service reads but does not shape:
# Kubernetes' AdmissionReview (app/integrations/kubernetes) and MLflow's webhook deliveries
# (app/integrations/mlflow). Their objects stay open (unknown fields are ignored, as
# Kubernetes asks of its clients, a real review carries hundreds, and a newer MLflow adds
# fields), and a body that is not valid is 400 `invalid-admission-review`, not 422, or is
# read only once MLflow's signature over it verifies (401 before), so the table-driven bounds
# and mass-assignment checks do not apply to them. Nothing of such a body is stored but what
# the service itself checks (a system key, a stage, a release of at most 200 characters; a
# model name, alias and version, bounded); tests/integrations/ checks their refusals instead.
FOREIGN_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/integrations/kubernetes/admission"): REVIEW_EXAMPLE,
    ("POST", "/v1/integrations/mlflow/webhook"): ALIAS_CREATED_EXAMPLE,
}


def url(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    return path


def prepare(client: TestClient, admin: dict[str, str]) -> None:
    """The resources the base bodies' paths name: a minimal-tier system, in stage proposed,
    and webhook 1."""
    webhook = client.post(
        "/v1/webhooks", json={"url": "https://93.184.216.34/hooks/bounds"}, headers=admin
    )
    assert webhook.status_code == 201, webhook.text
    make_system(client, admin, key=SYSTEM, tier="minimal")


def field_errors(response: Any) -> list[dict[str, str]]:
    """The errors of a 422 validation problem, checked to be one."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert problem["detail"]
    errors: list[dict[str, str]] = problem["errors"]
    return errors


def body_operations(
    app: FastAPI, *, foreign: bool = False
) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation of the document that takes a body of
    this service's own (with `foreign`, the FOREIGN_BODIES operations too)."""
    return [
        (method.upper(), path, operation)
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation and (foreign or (method.upper(), path) not in FOREIGN_BODIES)
    ]


def request_schema(operation: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


class Schemas:
    """Resolves `$ref`s and `X | null` in the document's schemas."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.components: dict[str, Any] = document["components"]["schemas"]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while True:
            if "$ref" in schema:
                schema = self.components[schema["$ref"].rsplit("/", 1)[-1]]
                continue
            options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
            if len(options) == 1:
                schema = options[0]
                continue
            return schema


@dataclass(frozen=True)
class Leaf:
    """A bounded place in a request body: `kind` is string, key (a map's key), array, map,
    or number (integers too)."""

    kind: str
    path: tuple[str | int, ...]
    schema: dict[str, Any]
    value: Any

    @property
    def field(self) -> str:
        """The field name the service's validation errors use for this place."""
        return ".".join(str(part) for part in self.path)


def leaves(
    schemas: Schemas, schema: dict[str, Any], value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[Leaf]:
    """Every string, number, array and map in `schema`, walked alongside the example `value`
    (into the first item of arrays and the first entry of maps)."""
    schema = schemas.resolve(schema)
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        return
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            yield Leaf("map", path, schema, value)
            if "propertyNames" in schema:
                names = schemas.resolve(schema["propertyNames"])
                if "enum" not in names:
                    yield Leaf("key", path, names, value)
            if isinstance(value, dict) and value:
                first = next(iter(value))
                yield from leaves(schemas, values, value[first], (*path, first))
        for name, sub in schema.get("properties", {}).items():
            present = value.get(name) if isinstance(value, dict) else None
            yield from leaves(schemas, sub, present, (*path, name))
    elif kind == "array":
        yield Leaf("array", path, schema, value)
        if isinstance(value, list) and value:
            yield from leaves(schemas, schema.get("items", {}), value[0], (*path, 0))
    elif kind == "string":
        yield Leaf("string", path, schema, value)
    elif kind in ("number", "integer"):
        yield Leaf("number", path, schema, value)


def with_value(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


def missing_fields(
    schemas: Schemas, schema: dict[str, Any], value: Any, path: str = ""
) -> list[str]:
    """Properties the document declares that the example body does not set."""
    schema = schemas.resolve(schema)
    missing: list[str] = []
    if schema.get("type") == "object" and isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            where = f"{path}.{name}" if path else name
            if name not in value:
                missing.append(where)
            else:
                missing += missing_fields(schemas, sub, value[name], where)
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and value:
            first = next(iter(value))
            missing += missing_fields(schemas, values, value[first], f"{path}.{first}")
    elif schema.get("type") == "array" and isinstance(value, list) and value:
        missing += missing_fields(schemas, schema.get("items", {}), value[0], f"{path}.0")
    return missing


DOCUMENT: dict[str, Any] = create_app().openapi()
SCHEMAS = Schemas(DOCUMENT)
