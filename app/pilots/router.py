from datetime import datetime

from fastapi import APIRouter, Response, status
from sqlmodel import Session

from app.auth import scope
from app.auth.dependencies import TEAM_SCOPED, Pipeline, Viewer
from app.auth.roles import Principal
from app.clock import Now
from app.db import DatabaseDep, read_transaction, write_transaction
from app.models import Pilot, System
from app.openapi_docs import errors
from app.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    IdPath,
    Limit,
    Page,
    decode_int_cursor,
    next_cursor_for,
)
from app.pilots import service as pilot_service
from app.pilots.schemas import PilotCreate, PilotRead, ResultCreate, ResultRecorded
from app.systems import service as system_service
from app.systems.dependencies import KeyPath

router = APIRouter(tags=["pilots"])


def _locked_pilot(
    session: Session, pilot_id: IdPath, *, actor: Principal, now: datetime
) -> tuple[Pilot, System]:
    """The pilot and its system, the system row locked so writers to it queue
    (`system_service.locked`); 403 when the system belongs to a team the actor does not act
    for."""
    pilot = pilot_service.get_pilot(session, pilot_id)
    system = session.get(System, pilot.system_id, with_for_update=True)
    assert system is not None
    scope.ensure_acts_for(actor, system_key=system.key, owner_team=system.owner_team)
    system_service.locked(session, [system], now=now)
    session.refresh(pilot)  # its status as of the lock: a concurrent conclude has committed
    return pilot, system


@router.post(
    "/v1/systems/{key}/pilots",
    status_code=status.HTTP_201_CREATED,
    summary="Start a pilot",
    description=(
        "Declares a pilot and its success criteria up front, for a system in stage pilot"
        " (409 `system-not-in-pilot` otherwise). A team-scoped identity starts pilots only"
        " for its teams' systems (403 `out-of-scope`)."
    ),
    responses=errors(400, 401, 403, 404, 409, 422),
    openapi_extra=TEAM_SCOPED,
)
def create_pilot(
    actor: Pipeline,
    key: KeyPath,
    body: PilotCreate,
    database: DatabaseDep,
    now: Now,
    response: Response,
) -> PilotRead:
    with write_transaction(database) as session:
        system = system_service.lock_for_write(session, key, actor=actor, now=now)
        pilot = pilot_service.create_pilot(session, system=system, body=body, actor=actor, now=now)
        read = pilot_service.read(session, pilot, system_key=key, now=now)
    response.headers["Location"] = f"/v1/pilots/{pilot.id}"
    return read


@router.get(
    "/v1/systems/{key}/pilots",
    summary="List a system's pilots",
    description="Every pilot of the system, newest first.",
    responses=errors(400, 401, 403, 404, 422),
)
def list_pilots(
    _actor: Viewer,
    key: KeyPath,
    database: DatabaseDep,
    now: Now,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[PilotRead]:
    before = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        rows = pilot_service.list_pilots(session, system=system, before=before, limit=limit)
        items = [pilot_service.read(session, row, system_key=key, now=now) for row in rows[:limit]]
    return Page(items=items, next_cursor=next_cursor_for(rows, limit, lambda row: row.id or 0))


@router.get(
    "/v1/pilots/{pilot_id}",
    summary="Get a pilot",
    description=(
        "The pilot with each criterion's latest value and result, its score, its outcome once"
        " concluded, its findings (open or cleared) and whether it runs past planned_end."
    ),
    responses=errors(401, 403, 404, 422),
)
def get_pilot(_actor: Viewer, pilot_id: IdPath, database: DatabaseDep, now: Now) -> PilotRead:
    with read_transaction(database) as session:
        pilot = pilot_service.get_pilot(session, pilot_id)
        system = session.get(System, pilot.system_id)
        assert system is not None
        return pilot_service.read(session, pilot, system_key=system.key, now=now)


@router.post(
    "/v1/pilots/{pilot_id}/results",
    status_code=status.HTTP_201_CREATED,
    summary="Post pilot results",
    description=(
        "Metrics measured by a pipeline, with optional findings. Each result is kept; the"
        " answer carries the evaluation after it. Metrics no criterion uses are kept and"
        " listed in `unknown_metrics`. A concluded pilot answers 409 `pilot-concluded`. A"
        " team-scoped identity posts only to its teams' pilots (403 `out-of-scope`)."
    ),
    responses=errors(400, 401, 403, 404, 409, 422),
    openapi_extra=TEAM_SCOPED,
)
def post_results(
    actor: Pipeline, pilot_id: IdPath, body: ResultCreate, database: DatabaseDep, now: Now
) -> ResultRecorded:
    with write_transaction(database) as session:
        pilot, system = _locked_pilot(session, pilot_id, actor=actor, now=now)
        result, evaluation = pilot_service.record_result(
            session, pilot=pilot, system=system, body=body, actor=actor, now=now
        )
        return ResultRecorded(
            result=pilot_service.result_read(pilot, result), evaluation=evaluation
        )


@router.post(
    "/v1/pilots/{pilot_id}/conclude",
    summary="Conclude a pilot",
    description=(
        "Freezes the pilot (missing metrics now fail) and records its outcome as"
        " `testing_evidence` and `measurable_value` evidence (pass: met, warning: partial,"
        " fail: not_met) with the pilot as source. A team-scoped identity concludes only its"
        " teams' pilots (403 `out-of-scope`), and a policy whose `attested_by` reserves"
        " either control for a higher role needs that role here too (403 `attestation-role`)."
    ),
    responses=errors(401, 403, 404, 409, 422),
    openapi_extra=TEAM_SCOPED,
)
def conclude_pilot(actor: Pipeline, pilot_id: IdPath, database: DatabaseDep, now: Now) -> PilotRead:
    with write_transaction(database) as session:
        pilot, system = _locked_pilot(session, pilot_id, actor=actor, now=now)
        pilot = pilot_service.conclude(session, pilot=pilot, system=system, actor=actor, now=now)
        return pilot_service.read(session, pilot, system_key=system.key, now=now)
