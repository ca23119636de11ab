from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from app.auth.dependencies import BearerCredentials, Viewer, authorize
from app.auth.roles import Role
from app.clock import Now
from app.db import DatabaseDep, read_transaction
from app.openapi_docs import errors
from app.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, decode_int_cursor, next_cursor_for
from app.readiness import service as readiness_service
from app.readiness.schemas import ReadinessRead, ReadinessSnapshotRead
from app.systems import service as system_service
from app.systems.dependencies import KeyPath

router = APIRouter(prefix="/v1/systems/{key}/readiness", tags=["readiness"])


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
    responses=errors(401, 403, 404),
)
def get_readiness(
    request: Request,
    credentials: BearerCredentials,
    key: Annotated[str, Path(description="The system's key.")],
    database: DatabaseDep,
    now: Now,
) -> Response:
    # The call dashboards poll, so it runs in one worker-thread call on one connection:
    # the key lookup happens here rather than in the `require` dependency (a thread call
    # of its own). Nothing here can fail validation, so 401/403 still come first.
    with read_transaction(database) as session:
        principal = authorize(
            database, credentials, Role.viewer, now=now, connection=session.connection()
        )
        request.state.api_key_id = principal.key_id  # for the request log
        document = readiness_service.readiness_document(session, key, now=now)
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
