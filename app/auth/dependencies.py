from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection

from app.auth import service as auth_service
from app.auth.roles import Principal, Role
from app.clock import get_now
from app.db import Database, run_read
from app.errors import Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer rdy_...`")


def identify(
    database: Database,
    credentials: HTTPAuthorizationCredentials | None,
    *,
    now: datetime,
    connection: Connection | None = None,
    defer_touch: bool = False,
) -> Principal:
    """The principal behind the request's key, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send an API key as `Authorization: Bearer <key>`.")
    principal = auth_service.authenticate(
        database,
        secret=credentials.credentials,
        now=now,
        connection=connection,
        defer_touch=defer_touch,
    )
    if principal is None:
        raise Unauthorized("The API key is unknown or revoked.")
    return principal


def check_role(principal: Principal, role: Role) -> None:
    """403 unless the principal's role is `role` or above."""
    if not principal.role.allows(role):
        raise Forbidden(
            f"This needs the {role.value} role or above; the key has {principal.role.value}.",
            required_role=role.value,
        )


def authorize(
    database: Database,
    credentials: HTTPAuthorizationCredentials | None,
    role: Role,
    *,
    now: datetime,
    connection: Connection | None = None,
) -> Principal:
    principal = identify(database, credentials, now=now, connection=connection)
    check_role(principal, role)
    return principal


async def identify_on_loop(
    request: Request,
    database: Database,
    credentials: HTTPAuthorizationCredentials | None,
    *,
    now: datetime,
) -> Principal:
    """`identify` for `async` routes: the key lookup runs in `run_read` (on SQLite, on the
    event loop), and the due refresh of last_used_at, a write, in a worker thread."""

    def lookup() -> Principal:
        with database.lookup_engine.connect() as connection:
            return identify(database, credentials, now=now, connection=connection, defer_touch=True)

    principal = await run_read(database, lookup)
    request.state.api_key_id = principal.key_id  # for the request log
    if principal.touch_due and principal.key_id is not None:
        await run_in_threadpool(auth_service.touch, database, key_id=principal.key_id, now=now)
    return principal


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    # A dependency, not a check inside endpoints, so a request without a valid key is
    # refused (401/403) before its body is even validated.
    # The database and the clock come straight from the app's state, as their own
    # dependencies would give them: every request resolves this one, and each dependency
    # costs a resolution.
    async def dependency(request: Request, credentials: BearerCredentials) -> Principal:
        database: Database = request.app.state.database
        principal = await identify_on_loop(request, database, credentials, now=get_now(request))
        check_role(principal, role)
        return principal

    # Read by app.openapi_docs to publish each operation's `x-required-role`.
    dependency.required_role = role  # type: ignore[attr-defined]
    return dependency


REQUIRED_ROLE_EXTENSION = "x-required-role"


def checks_role_inline(role: Role) -> dict[str, Any]:
    """`openapi_extra` for a route that calls `authorize(..., role, ...)` in its own body
    instead of depending on `require(role)`: declares the role the body checks, so the
    document (and the role matrix generated from it) still knows it."""
    return {REQUIRED_ROLE_EXTENSION: role.value}


Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Pipeline = Annotated[Principal, Depends(require(Role.pipeline))]
Approver = Annotated[Principal, Depends(require(Role.approver))]
Admin = Annotated[Principal, Depends(require(Role.admin))]
