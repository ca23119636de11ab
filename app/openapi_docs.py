"""Shared OpenAPI declarations, so every route documents its errors the same way."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

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
    401: "No API key, or an unknown or revoked one.",
    403: "The key's role is too low for this operation.",
    404: "The resource does not exist.",
    409: "The request conflicts with the current state.",
    412: "If-Match does not match the current ETag.",
    413: "The request body is too large.",
    422: "The request body or parameters are not valid; each bad field is listed.",
    500: "An unexpected failure; nothing was applied.",
    503: "Not ready to serve.",
}


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


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                separate_input_output_schemas=app.separate_input_output_schemas,
            )
            app.openapi_schema = _problem_content(document)
        return app.openapi_schema

    # FastAPI's documented way to customise the document: replace the method.
    app.openapi = openapi  # type: ignore[method-assign]
