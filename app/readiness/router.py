from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlmodel import col

from app.auth.dependencies import Viewer
from app.clock import Now
from app.db import SessionDep
from app.models import ReadinessSnapshot
from app.openapi_docs import errors
from app.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, decode_int_cursor, next_cursor_for
from app.readiness import service as readiness_service
from app.readiness.schemas import ReadinessRead, ReadinessSnapshotRead
from app.systems.dependencies import KeyPath, SystemDep

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
def get_readiness(_actor: Viewer, key: KeyPath, session: SessionDep, now: Now) -> Response:
    # Served as the stored JSON: no ORM object, no model validation on the hot path.
    document = readiness_service.readiness_document(session, key, now=now)
    return Response(content=document, media_type="application/json")


@router.get(
    "/history",
    summary="Get a system's readiness history",
    description="A snapshot for every change of an input, newest first.",
    responses=errors(400, 401, 403, 404, 422),
)
def get_readiness_history(
    _actor: Viewer,
    system: SystemDep,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ReadinessSnapshotRead]:
    before = decode_int_cursor(cursor)
    query = (
        select(ReadinessSnapshot)
        .where(col(ReadinessSnapshot.system_id) == system.id)
        .order_by(col(ReadinessSnapshot.id).desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(col(ReadinessSnapshot.id) < before)
    rows = list(session.execute(query).scalars())
    return Page(
        items=[
            ReadinessSnapshotRead.model_validate(row, from_attributes=True) for row in rows[:limit]
        ],
        next_cursor=next_cursor_for(rows, limit, lambda row: row.id or 0),
    )
