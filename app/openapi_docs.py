"""Shared OpenAPI response declarations, so every route documents its errors the same way."""

from typing import Any

from app.errors import Problem

_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, a cursor this service did not issue).",
    401: "No API key, or an unknown or revoked one.",
    403: "The key's role is too low for this operation.",
    404: "The resource does not exist.",
    409: "The request conflicts with the current state.",
    412: "If-Match does not match the current ETag.",
    413: "The request body is too large.",
    422: "The request body or parameters are not valid; each bad field is listed.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }
