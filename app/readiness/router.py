from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.auth.dependencies import (
    BearerCredentials,
    Viewer,
    check_role,
    checks_role_inline,
    identities_of,
    note_caller,
)
from app.auth.roles import Principal, Role
from app.clock import get_now
from app.db import Database, DatabaseDep, read_transaction, run_read
from app.openapi_docs import errors
from app.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, decode_int_cursor, next_cursor_for
from app.readiness import service as readiness_service
from app.readiness.schemas import ReadinessRead, ReadinessSnapshotRead
from app.schemas import NO_NUL
from app.systems import service as system_service
from app.systems.dependencies import KeyPath

router = APIRouter(prefix="/v1/systems/{key}/readiness", tags=["readiness"])

# get_readiness checks its role in its own body; declared once for the check and the document.
READINESS_ROLE = Role.viewer


@router.get(
    "",
    summary="Get a system's readiness",
    description=(
        "The score, the level, every control's status and both gates with every blocking"
        " item, under the active policy. This is the call dashboards and platforms poll, so"
        " it answers from the evaluation stored at the last change and re-evaluates only"
        " when time has made it stale."
    ),
    response_model=ReadinessRead,
    responses=errors(401, 403, 404, 422),
    openapi_extra=checks_role_inline(READINESS_ROLE),
)
async def get_readiness(
    request: Request,
    credentials: BearerCredentials,
    key: KeyPath,
    release: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_NUL,
            description="Judge for this release: the policy's release-bound controls count"
            " only evidence naming it or naming none. Evaluated afresh, never stored. Empty,"
            " as left out (a template that always sends the parameter may leave it blank).",
        ),
    ] = None,
) -> Response:
    # The call dashboards poll, so it is one short read on one connection (on SQLite run
    # on the event loop, see `run_read`): the key lookup happens here rather than in the
    # `require` dependency. Only a malformed key (422) is refused before 401/403.
    # The database and the clock come straight from the app's state, as their
    # dependencies would give them, without a dependency resolution each.
    release = release or None
    database: Database = request.app.state.database
    identities = identities_of(request)
    now = get_now(request)

    # An OIDC token is known before the read (from memory once verified); an API key is
    # looked up on the read's own connection.
    caller: Principal | None = await identities.identify_token(credentials, now=now)

    def read() -> str:
        nonlocal caller
        with database.lookup_engine.connect() as connection:
            if caller is None:
                caller = identities.identify(
                    credentials, now=now, connection=connection, defer_touch=True
                )
            note_caller(request, caller)
            check_role(caller, READINESS_ROLE)
            stored = readiness_service.stored_document(connection, key, now=now)
        if stored.document is not None and release is None:
            return stored.document
        # Past its validity, or for a release: evaluated afresh, in a transaction for one
        # consistent view.
        with read_transaction(database) as session:
            return readiness_service.fresh_document(
                session, stored.system_id, now=now, release=release
            )

    try:
        document = await run_read(database, read)
    finally:
        # The key was used even when the answer is a 403 or 404.
        if caller is not None:
            await identities.touch_if_due(caller, now=now)
    # Served as the stored JSON: no ORM object, no model validation on the hot path.
    return Response(content=document, media_type="application/json")


@router.get(
    "/history",
    summary="Get a system's readiness history",
    description="A snapshot for every change of an input, newest first.",
    responses=errors(400, 401, 403, 404, 422),
)
def get_readiness_history(
    _actor: Viewer,
    key: KeyPath,
    database: DatabaseDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ReadinessSnapshotRead]:
    before = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        rows = readiness_service.history(session, system=system, before=before, limit=limit)
    return Page(
        items=[
            ReadinessSnapshotRead.model_validate(row, from_attributes=True) for row in rows[:limit]
        ],
        next_cursor=next_cursor_for(rows, limit, lambda row: row.id or 0),
    )
