"""The one error hierarchy and the one renderer of RFC 9457 problem details."""

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from app.outage import database_unavailable, reason

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "/problems/"

logger = logging.getLogger("app.errors")


class DomainError(Exception):
    status: ClassVar[int] = 400
    type: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(DomainError):
    status = 400
    type = "bad-request"
    title = "Bad request"


class InvalidCursor(BadRequest):
    type = "invalid-cursor"
    title = "Invalid cursor"


class Unauthorized(DomainError):
    status = 401
    type = "unauthorized"
    title = "Missing or invalid credentials"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(DomainError):
    status = 403
    type = "forbidden"
    title = "The caller's role is not allowed to do this"


class OutOfScope(Forbidden):
    type = "out-of-scope"
    title = "The identity's teams do not include the system's owner team"


class AttestationRole(Forbidden):
    type = "attestation-role"
    title = "The policy needs a higher role to attest this control"


class NotIndependent(Forbidden):
    type = "not-independent"
    title = "This tier needs an approval from outside the owner team"


class TierLoweringNeedsApprover(Forbidden):
    type = "tier-lowering-needs-approver"
    title = "Lowering a system's risk tier needs the approver role"


class NoRoleForIdentity(Forbidden):
    type = "no-role-for-identity"
    title = "No claim rule gives this identity a role"


class NotFound(DomainError):
    status = 404
    type = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    type = "conflict"
    title = "Conflict"


class AlreadyExists(Conflict):
    type = "already-exists"
    title = "Already exists"


class ExternalRefTaken(Conflict):
    type = "external-ref-taken"
    title = "Another system has this external_ref"


class GateDenied(Conflict):
    type = "gate-denied"
    title = "The gate to the target stage does not pass"


class InvalidTransition(Conflict):
    type = "invalid-transition"
    title = "The lifecycle does not allow this move"


class StageConflict(Conflict):
    type = "stage-conflict"
    title = "The system is not in the expected stage"


class PreconditionFailed(DomainError):
    status = 412
    type = "precondition-failed"
    title = "Precondition failed"


class PayloadTooLarge(DomainError):
    status = 413
    type = "payload-too-large"
    title = "Request body too large"


class HeadersTooLarge(DomainError):
    """Written by the server itself (app.protocol), before any of the app runs."""

    status = 431
    type = "headers-too-large"
    title = "Request headers too large"


class Unprocessable(DomainError):
    status = 422
    type = "validation-error"
    title = "The request is not valid"

    def __init__(self, detail: str, **extra: Any) -> None:
        # Every 422 names its bad fields the same way request validation does.
        errors = [
            {"location": "body", "code": "invalid", **error} for error in extra.pop("errors", [])
        ]
        super().__init__(detail, errors=errors, **extra)


class WebhookUrlRefused(Unprocessable):
    type = "webhook-url-refused"
    title = "The webhook URL's host is not a public address"


class ServiceUnavailable(DomainError):
    status = 503
    type = "not-ready"
    title = "Not ready"


class DatabaseUnavailable(ServiceUnavailable):
    """The database is out of reach or refuses writes (app.outage): a retry later works."""

    type = "service-unavailable"
    title = "Service unavailable"
    retry_after_seconds: ClassVar[int] = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this service is rendered."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _field_name(loc: tuple[Any, ...]) -> str:
    # Drop the leading "body"/"query"/"path"/"header" so clients see their own field names.
    parts = [str(part) for part in loc[1:]] if len(loc) > 1 else [str(part) for part in loc]
    return ".".join(parts)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return problem_response(
        exc.status, exc.type, exc.title, exc.detail, headers=exc.headers(), **exc.extra
    )


def is_malformed_json(exc: RequestValidationError) -> bool:
    """The body did not parse as JSON (400 `malformed-json`), rather than some field."""
    return any(error.get("type") == "json_invalid" for error in exc.errors())


def field_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    """A validation failure as problem details name it: a one-line `detail`, and `errors`,
    each `{field, location, message, code}`."""
    items = [
        {
            "field": _field_name(tuple(error.get("loc", ()))),
            "location": str(error.get("loc", ("body",))[0]),
            "message": str(error.get("msg", "")),
            "code": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    detail = "; ".join(f"{item['field'] or item['location']}: {item['message']}" for item in items)
    return detail, items


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if is_malformed_json(exc):
        return problem_response(
            400, "malformed-json", "Malformed JSON", "The request body is not valid JSON."
        )
    detail, items = field_errors(exc)
    return problem_response(
        422, "validation-error", "The request is not valid", detail, errors=items
    )


def _allowed_methods(request: Request) -> str | None:
    """Every method some route serves at this path. Starlette's 405 names only the first
    route that matched the path, so `Allow` missed methods other routes of the path serve."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.path and route.methods and compile_path(route.path)[0].match(path):
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")  # served wherever GET is (app.middleware.HeadAsGet)
    return ", ".join(sorted(methods)) if methods else None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # FastAPI raises its 400 for a body it could not parse that is no JSON syntax error (JSON
    # nested deeper than the parser goes): to a client, a malformed body like any other.
    slugs = {
        400: "malformed-json",
        404: "not-found",
        405: "method-not-allowed",
        413: "payload-too-large",
    }
    slug = slugs.get(exc.status_code, "http-error")
    titles = {400: "Malformed JSON", 404: "Not found", 405: "Method not allowed"}
    title = titles.get(exc.status_code, "HTTP error")
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers = {**(headers or {}), "Allow": allowed}
    return problem_response(exc.status_code, slug, title, detail, headers=headers)


async def _unstorable_value(_request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value that validation let through (a number or text it cannot
    # hold): the client's input, so a 422 rather than a 500, and nothing was written.
    logger.warning("database refused a value: %s", type(exc).__name__)
    return problem_response(
        422,
        "unstorable-value",
        "A value cannot be stored",
        "A value in the request is outside what the service can store.",
        errors=[],
    )


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):
        # A known condition, not a bug: one line, no traceback.
        logger.warning(
            "database unavailable on %s %s: %s", request.method, request.url.path, reason(exc)
        )
        return await _domain_error(
            request,
            DatabaseUnavailable(
                "The database cannot be reached or cannot take writes right now; nothing was"
                " applied. Retry later."
            ),
        )
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500, "internal-error", "Internal server error", "The request failed; it was not applied."
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _unstorable_value)
    app.add_exception_handler(Exception, unexpected_error)
