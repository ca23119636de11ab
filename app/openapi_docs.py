"""Shared OpenAPI declarations, so every route documents its errors the same way."""

import copy
import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel
from starlette.routing import BaseRoute

from app.auth.dependencies import OIDC_SCHEME, OIDC_SECURITY_SCHEME, REQUIRED_ROLE_EXTENSION
from app.auth.roles import Role
from app.errors import PROBLEM_MEDIA_TYPE, Problem
from app.idempotency.middleware import NOT_REPLAYABLE


class FieldError(BaseModel):
    field: str
    location: str
    message: str
    code: str


class ValidationProblem(Problem):
    errors: list[FieldError]


_DESCRIPTIONS = {
    400: "Malformed request: bad JSON, a cursor this service did not issue, a bad Idempotency-Key.",
    401: (
        "No credentials; an unknown or revoked API key; or an OIDC token that does not verify"
        " (signature, issuer, key, audience, expiry, or an `alg` of none or HS*)."
    ),
    403: (
        "The caller's role is too low for this operation (`forbidden`, with `required_role`),"
        " or a rule of who may say what refuses it: `out-of-scope` (a team-scoped caller and a"
        " system of another team), `attestation-role` (the policy reserves the control's"
        " evidence for a higher role), `not-independent` (an approval from the owner team"
        " where the tier needs an outsider), `tier-lowering-needs-approver`, or"
        " `no-role-for-identity` (an OIDC token no claim rule maps)."
    ),
    404: "The resource does not exist.",
    409: "The request conflicts with the current state.",
    412: "If-Match does not match the current ETag.",
    413: "The request body is too large.",
    422: "The request body or parameters are not valid; each bad field is listed.",
    500: "An unexpected failure; nothing was applied.",
    503: "Not ready to serve.",
}

# Every operation that uses the database may answer this 503 (app.errors.DatabaseUnavailable).
_DATABASE_UNAVAILABLE: dict[str, Any] = {
    "description": (
        "The database cannot be reached or cannot take writes right now"
        " (`service-unavailable`), or an OIDC token's issuer cannot be reached for its keys"
        " (`identity-provider-unavailable`); nothing was applied. Retry after the seconds in"
        " `Retry-After`."
    ),
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
# Operations that answer without the database.
_WITHOUT_DATABASE = frozenset({"/healthz"})

# Document-level metadata, passed to FastAPI in app.main and on to get_openapi below.
CONTACT: dict[str, str] = {"name": "Readiness maintainers"}
LICENSE: dict[str, str] = {"name": "Proprietary", "identifier": "LicenseRef-Proprietary"}
SERVERS: list[dict[str, str]] = [
    {
        "url": "http://127.0.0.1:8000",
        "description": "`make run` on your machine; a deployment serves the same paths.",
    }
]
TAGS: list[dict[str, str]] = [
    {"name": "health", "description": "Liveness, readiness to serve and Prometheus metrics."},
    {"name": "api-keys", "description": "API keys and their roles (admin only)."},
    {"name": "controls", "description": "The catalogue of controls evidence is recorded for."},
    {"name": "policies", "description": "Versioned, risk-tiered readiness policies."},
    {"name": "systems", "description": "AI systems: registration, lookup and merge patches."},
    {"name": "evidence", "description": "Evidence per control, with its full history."},
    {"name": "readiness", "description": "The readiness score, level and gates of a system."},
    {
        "name": "lifecycle",
        "description": "Gate checks, stage transitions, approvals and waivers.",
    },
    {"name": "pilots", "description": "Pilots with success criteria, results and outcomes."},
    {"name": "events", "description": "The append-only audit trail, as a followable feed."},
    {
        "name": "audit",
        "description": "Proof of the audit trail: its hash chain verified, and signed checkpoints.",
    },
    {
        "name": "webhooks",
        "description": "Events pushed to subscribers, signed, retried, in order per system.",
    },
    {"name": "reports", "description": "Portfolio and drift reports across systems."},
    {
        "name": "integrations",
        "description": "Gates in other systems' own formats and webhooks they send: the"
        " Kubernetes admission webhook, MLflow's model registry.",
    },
]

# `security` for an operation that takes no API key, so the document says so explicitly.
NO_SECURITY: dict[str, Any] = {"security": []}


# On an operation that takes no key but a signed request (a webhook): names the header that
# carries the signature. The security tests read it.
WEBHOOK_SIGNATURE_EXTENSION = "x-webhook-signature"

# Models of the bodies that routes read themselves (`own_json_body`), by name.
_OWN_BODIES: dict[str, type[BaseModel]] = {}


def own_json_body(model: type[BaseModel], *, description: str) -> dict[str, Any]:
    """`openapi_extra` documenting `model` as the JSON body of a route that reads the body
    itself (a webhook checks a signature over its exact bytes before parsing them), so
    FastAPI neither parses it first nor documents it."""
    _OWN_BODIES[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _own_body_schemas(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _OWN_BODIES.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    return document


def _without_unreferenced_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """Drops the component schemas nothing refers to: FastAPI lists the definitions of every
    type a model names, also of one whose field states its own schema instead
    (`readiness.schemas.BlockingCodeRead`)."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    while True:
        others = json.dumps({**document, "components": {**document["components"], "schemas": {}}})
        text = others + json.dumps(schemas)
        unused = [name for name in schemas if f'"#/components/schemas/{name}"' not in text]
        if not unused:
            return document
        for name in unused:
            del schemas[name]


# Handled by app.idempotency.middleware for every POST, so declared here once.
IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the same key and request replay the first response (with"
        " `Idempotent-Replayed: true`); the same key with another request is 422; while the"
        " first is still running, 409 `idempotency-in-progress`. Scoped to the API key."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": ValidationProblem if status == 422 else Problem,
            "description": _DESCRIPTIONS[status],
        }
        for status in statuses
    }


def _problem_content(document: dict[str, Any]) -> dict[str, Any]:
    """Error responses are served as problem+json, so document them as that media type."""
    schemas = document.get("components", {}).get("schemas", {})
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if method == "post" and path not in NOT_REPLAYABLE:
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY_PARAMETER)
                # A malformed Idempotency-Key is refused before the route runs.
                operation["responses"].setdefault(
                    "400",
                    {
                        "description": _DESCRIPTIONS[400],
                        "content": {
                            PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                        },
                    },
                )
            operation["responses"].setdefault(
                "500",
                {
                    "description": _DESCRIPTIONS[500],
                    "content": {
                        PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    },
                },
            )
            if path not in _WITHOUT_DATABASE:
                operation["responses"].setdefault("503", copy.deepcopy(_DATABASE_UNAVAILABLE))
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if int(status) < 400 or "application/json" not in content:
                    continue
                media = content.pop("application/json")
                if media.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                    media = {"schema": {"$ref": "#/components/schemas/ValidationProblem"}}
                content[PROBLEM_MEDIA_TYPE] = media
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def _roles_in(dependant: Dependant) -> set[Role]:
    found: set[Role] = set()
    for sub in dependant.dependencies:
        role = getattr(sub.call, "required_role", None)
        if isinstance(role, Role):
            found.add(role)
        found |= _roles_in(sub)
    return found


def _required_roles(
    document: dict[str, Any], routes: Sequence[BaseRoute | RouteContext]
) -> dict[str, Any]:
    """`x-required-role` on every operation that needs a key: the lowest role allowed, from
    the route's `require(role)` dependencies or, for a route that checks in its own body,
    the role its `openapi_extra` declares (app.auth.dependencies.checks_role_inline)."""
    # Walked as get_openapi walks them, so included routers' own dependencies count too.
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        roles = _roles_in(route.dependant)
        declared = (route.openapi_extra or {}).get(REQUIRED_ROLE_EXTENSION)
        if declared is not None:
            roles.add(Role(declared))
        if not roles:
            continue
        needed = max(roles, key=lambda role: role.rank)
        for method in route.methods or ():
            operation = document["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                operation[REQUIRED_ROLE_EXTENSION] = needed.value
    return document


def _oidc_tokens(document: dict[str, Any]) -> dict[str, Any]:
    """Wherever an API key is accepted, an OIDC token is too (app.auth.dependencies)."""
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    if "HTTPBearer" not in schemes:
        return document
    schemes[OIDC_SCHEME] = OIDC_SECURITY_SCHEME
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            security = operation.get("security")
            if security and {"HTTPBearer": []} in security:
                security.append({OIDC_SCHEME: []})
    return document


def _own_validation_status(
    document: dict[str, Any], routes: Sequence[BaseRoute | RouteContext]
) -> dict[str, Any]:
    """FastAPI documents a 422 for every operation with a body; a route whose class answers
    an invalid body with a status of its own (`validation_status`, such as the admission
    webhook's 400) never answers it, so the 422 is left out."""
    for route in iter_route_contexts(routes):
        status = getattr(route.original_route, "validation_status", 422)
        if status == 422 or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = document["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                operation["responses"].pop("422", None)
    return document


def _webhook_answers(document: dict[str, Any]) -> dict[str, Any]:
    """The requests this service sends (`webhooks`) are answered by their receivers: how a
    receiver refuses a body is its own business, so FastAPI's 422 is left out."""
    for operations in document.get("webhooks", {}).values():
        for operation in operations.values():
            operation["responses"].pop("422", None)
    return document


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                webhooks=app.webhooks.routes,
                tags=app.openapi_tags,
                servers=app.servers,
                contact=app.contact,
                license_info=app.license_info,
                separate_input_output_schemas=app.separate_input_output_schemas,
            )
            document = _own_validation_status(
                _problem_content(_webhook_answers(_own_body_schemas(document))), app.routes
            )
            document = _without_unreferenced_schemas(document)
            app.openapi_schema = _oidc_tokens(_required_roles(document, app.routes))
        return app.openapi_schema

    # FastAPI's documented way to customise the document: replace the method.
    app.openapi = openapi  # type: ignore[method-assign]
