from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from starlette.types import Receive, Scope, Send

from app.auth import service as auth_service
from app.auth.oidc import OidcVerifier, looks_like_jwt
from app.auth.roles import Principal, Role
from app.clock import get_now
from app.db import Database, run_read
from app.errors import Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer rdy_...`")
# The same header can carry a JWT from a trusted OIDC issuer instead; app.openapi_docs
# declares it as a second scheme beside every use of `bearer`.
OIDC_SCHEME = "OidcToken"
OIDC_SECURITY_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": (
        "A JWT from an OIDC issuer the service trusts (READINESS_OIDC_CONFIG): a GitHub Actions"
        " job, a Kubernetes service account, a corporate identity provider. Claim rules give it"
        " a role and teams."
    ),
}


def _secret(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send an API key or token as `Authorization: Bearer <secret>`.")
    return credentials.credentials


@dataclass(frozen=True)
class Identities:
    """Turns a request's bearer secret into a principal: API keys are looked up in the
    database, JWTs verified against the configured OIDC issuers (`oidc`, None when none
    is configured, so every secret is an API key)."""

    database: Database
    oidc: OidcVerifier | None = None

    def identify(
        self,
        credentials: HTTPAuthorizationCredentials | None,
        *,
        now: datetime,
        connection: Connection | None = None,
        defer_touch: bool = False,
    ) -> Principal:
        """The principal behind the request's secret, or 401 (403 for a token no claim rule
        maps). Blocking: a token of an issuer whose keys are not fetched yet fetches them."""
        secret = _secret(credentials)
        if self.oidc is not None and looks_like_jwt(secret):
            principal = self.oidc.verify(secret, now=now)
            if principal is not None:
                return principal
        return self._api_key(secret, now=now, connection=connection, defer_touch=defer_touch)

    async def identify_token(
        self, credentials: HTTPAuthorizationCredentials | None, *, now: datetime
    ) -> Principal | None:
        """For `async` callers: the principal of an OIDC token, or None when the secret is
        none (an API key, to look up with the caller's read). A token verified before is
        answered from memory on the event loop; a new one is verified in a worker thread,
        which may wait for the issuer's keys."""
        secret = _secret(credentials)
        if self.oidc is None or not looks_like_jwt(secret):
            return None
        cached = self.oidc.cached(secret, now=now)
        if cached is not None:
            return cached
        return await run_in_threadpool(
            lambda: self.identify(credentials, now=now, defer_touch=True)
        )

    async def identify_async(
        self, request: Request, credentials: HTTPAuthorizationCredentials | None, *, now: datetime
    ) -> Principal:
        """`identify` for `async` routes: the key lookup runs in `run_read` (on SQLite, on
        the event loop), and the due refresh of last_used_at, a write, in a worker thread."""
        principal = await self.identify_token(credentials, now=now)
        if principal is None:

            def lookup() -> Principal:
                with self.database.lookup_engine.connect() as connection:
                    return self.identify(
                        credentials, now=now, connection=connection, defer_touch=True
                    )

            principal = await run_read(self.database, lookup)
        note_caller(request, principal)
        await self.touch_if_due(principal, now=now)
        return principal

    async def touch_if_due(self, principal: Principal, *, now: datetime) -> None:
        # Refreshing last_used_at is a write, so it never runs on the event loop; it is due
        # at most once a minute per key.
        if principal.touch_due and principal.key_id is not None:
            await run_in_threadpool(
                auth_service.touch, self.database, key_id=principal.key_id, now=now
            )

    def _api_key(
        self, secret: str, *, now: datetime, connection: Connection | None, defer_touch: bool
    ) -> Principal:
        principal = auth_service.authenticate(
            self.database, secret=secret, now=now, connection=connection, defer_touch=defer_touch
        )
        if principal is None:
            raise Unauthorized("The API key is unknown or revoked.")
        return principal


def identities_of(request: Request) -> Identities:
    identities: Identities = request.app.state.identities
    return identities


def note_caller(request: Request, principal: Principal) -> None:
    """Names the caller in the request log: an API key by id, an OIDC identity by subject."""
    request.state.api_key_id = principal.key_id
    if principal.subject is not None:
        request.state.oidc_subject = principal.subject


def authorize(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    role: Role,
    *,
    now: datetime,
) -> Principal:
    """For a sync route that checks its caller in its own body (one whose check a setting
    can waive): the caller, named in the request log, or 401/403. Blocking, and holding no
    connection of the route's while an issuer's keys are fetched."""
    principal = identities_of(request).identify(credentials, now=now)
    note_caller(request, principal)
    check_role(principal, role)
    return principal


def check_role(principal: Principal, role: Role) -> None:
    """403 unless the principal's role is `role` or above."""
    if not principal.role.allows(role):
        raise Forbidden(
            f"This needs the {role.value} role or above; the caller has {principal.role.value}.",
            required_role=role.value,
        )


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


# Where `authenticate_before_body` leaves the caller for `require` to take up.
_PRINCIPAL_SCOPE_KEY = "readiness.principal"


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    # A dependency, not a check inside endpoints, so a request without a valid key is
    # refused (401/403) before its body is even validated.
    # The identities and the clock come straight from the app's state, as their own
    # dependencies would give them: every request resolves this one, and each dependency
    # costs a resolution.
    async def dependency(request: Request, credentials: BearerCredentials) -> Principal:
        principal: Principal | None = request.scope.get(_PRINCIPAL_SCOPE_KEY)
        if principal is None:
            principal = await identities_of(request).identify_async(
                request, credentials, now=get_now(request)
            )
        check_role(principal, role)
        return principal

    # Read by app.openapi_docs to publish each operation's `x-required-role`.
    dependency.required_role = role  # type: ignore[attr-defined]
    return dependency


REQUIRED_ROLE_EXTENSION = "x-required-role"
# Operations that write to one system: a team-scoped identity needs the system's owner team
# (for a new system, the one it names) among its teams (app.auth.scope). Published on the
# operation, and read by the identity matrix of the tests.
TEAM_SCOPED_EXTENSION = "x-team-scoped"


def checks_role_inline(role: Role) -> dict[str, Any]:
    """`openapi_extra` for a route that checks `role` in its own body (with `check_role`)
    instead of depending on `require(role)`: declares the role the body checks, so the
    document (and the role matrix generated from it) still knows it."""
    return {REQUIRED_ROLE_EXTENSION: role.value}


# `openapi_extra` of the operations that write to one system (see TEAM_SCOPED_EXTENSION).
TEAM_SCOPED: dict[str, Any] = {TEAM_SCOPED_EXTENSION: True}


Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Pipeline = Annotated[Principal, Depends(require(Role.pipeline))]
Approver = Annotated[Principal, Depends(require(Role.approver))]
Admin = Annotated[Principal, Depends(require(Role.admin))]


def _required_role(route: APIRoute) -> Role | None:
    for dependency in route.dependant.dependencies:
        role = getattr(dependency.call, "required_role", None)
        if isinstance(role, Role):
            return role
    return None


def authenticate_before_body(route: APIRoute) -> None:
    """Makes a route that takes a body and depends on `require(role)` check its caller
    before the body is read. FastAPI parses the body before it resolves any dependency, so
    a malformed body answered 400 to a caller without a key, telling it what the route
    expects; now such a caller gets its 401 (or 403) whatever it sends. The caller found
    here is the one the dependency answers with: one key lookup per request, as before.

    Wraps the route's own ASGI app, which runs once the router has matched it, so nothing
    else is matched twice and routes without a body (the readiness read) are untouched."""
    role = _required_role(route)
    if role is None or route.body_field is None or getattr(route, "_authenticates_first", False):
        return
    inner = route.app

    async def authenticated_first(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        credentials = await bearer(request)
        principal = await identities_of(request).identify_async(
            request, credentials, now=get_now(request)
        )
        check_role(principal, role)
        scope[_PRINCIPAL_SCOPE_KEY] = principal
        await inner(scope, receive, send)

    route.app = authenticated_first
    route._authenticates_first = True  # type: ignore[attr-defined]
