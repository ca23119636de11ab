from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.auth.dependencies import Viewer
from app.db import DatabaseDep, read_transaction
from app.events import service as events_service
from app.events.service import EventType
from app.openapi_docs import errors
from app.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_int_cursor, encode_cursor
from app.schemas import NO_NUL, Actor

router = APIRouter(prefix="/v1/events", tags=["events"])


class EventRead(BaseModel):
    id: int
    # A string, not the enum of the `type` filter: the service adds event types over time,
    # and a follower that meets one it does not know should skip it, not fail to parse the page.
    type: str = Field(
        description="What happened, such as `evidence.recorded`; the `type` filter lists every"
        " type known today. New types are added over time: skip the ones you do not know."
    )
    system_key: str | None
    actor: Actor
    occurred_at: datetime
    data: dict[str, Any]
    prev_hash: str = Field(
        description="The `hash` of the event before this one; 64 zeros for the first event."
    )
    hash: str = Field(
        description="Hex SHA-256 of `prev_hash` followed by this event's canonical JSON: the"
        " object of `id`, `type`, `system_key`, `actor`, `occurred_at` and `data` as this feed"
        " gives them, in RFC 8785's JSON Canonicalization Scheme (GET /v1/audit/verify"
        " recomputes it)."
    )


class EventPage(BaseModel):
    items: list[EventRead]
    next_cursor: str | None = Field(
        description=(
            "Where to resume: pass it as `after` to get later events. Unlike other lists it"
            " is given even on a short page, so followers can poll with it; null only when"
            " nothing matched and no `after` was given."
        )
    )


@router.get(
    "",
    summary="Follow the event log",
    description=(
        "The append-only audit log, oldest first, in commit order. Follow it with the"
        " `next_cursor` of each page as `after`."
    ),
    responses=errors(400, 401, 403, 422),
)
def list_events(
    _actor: Viewer,
    database: DatabaseDep,
    after: Cursor = None,
    type: EventType | None = None,
    system: Annotated[
        str | None, Query(max_length=63, pattern=NO_NUL, description="A system key.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
) -> EventPage:
    position = decode_int_cursor(after)
    with read_transaction(database) as session:
        rows = events_service.list_events(
            session, after=position, type=type, system_key=system, limit=limit
        )
    items = [
        EventRead(
            id=row.id or 0,
            type=row.type,
            system_key=row.system_key,
            actor=Actor.recorded(row),
            occurred_at=row.occurred_at,
            data=row.data,
            prev_hash=row.prev_hash,
            hash=row.hash,
        )
        for row in rows
    ]
    resume = rows[-1].id if rows else position
    return EventPage(items=items, next_cursor=encode_cursor(resume) if resume is not None else None)
