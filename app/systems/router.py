from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from app.auth.dependencies import TEAM_SCOPED, Pipeline, Viewer
from app.clock import Now
from app.db import DatabaseDep, read_transaction, write_transaction
from app.lifecycle.stages import GateStage, Stage
from app.models import System
from app.openapi_docs import errors
from app.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, decode_int_cursor, next_cursor_for
from app.readiness import service as readiness_service
from app.readiness.service import Summary
from app.readiness.tiers import Tier
from app.schemas import NO_NUL, Release
from app.systems import service as system_service
from app.systems.dependencies import KeyPath
from app.systems.schemas import (
    ConfirmedClassification,
    LabelFilter,
    Owner,
    RiskTierRule,
    SystemCreate,
    SystemPatch,
    SystemRead,
)

router = APIRouter(prefix="/v1/systems", tags=["systems"])


def to_read(system: System, readiness: Summary) -> SystemRead:
    owner = (
        Owner(team=system.owner_team, contact=system.owner_contact)
        if system.owner_team and system.owner_contact
        else None
    )
    return SystemRead.model_validate(
        {
            **system.model_dump(exclude={"readiness_document", "owner_updated_at"}),
            "owner": owner,
            "risk_tier_rule": RiskTierRule.model_validate(system.risk_tier_rule),
            "classification": ConfirmedClassification(
                tier=Tier(system.risk_tier), confirmation_id=system.classification_confirmation_id
            )
            if system.classification_confirmed_tier == system.risk_tier
            and system.classification_confirmation_id is not None
            else None,
            "current_release": Release(version=system.release_version, uri=system.release_uri)
            if system.release_version is not None
            else None,
            **asdict(readiness),
        }
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register an AI system",
    description=(
        "Registers a system in stage `proposed`; its risk tier is derived at once. A"
        " team-scoped identity must name one of its teams as `owner.team` (403"
        " `out-of-scope`). An `external_ref` links one system only (409"
        " `external-ref-taken`)."
    ),
    responses={
        **errors(400, 401, 403, 422),
        409: {
            **errors(409)[409],
            "description": "A system with this `key` exists (`already-exists`), or another"
            " system has this `external_ref` (`external-ref-taken`).",
        },
    },
    openapi_extra=TEAM_SCOPED,
)
def create_system(
    actor: Pipeline, body: SystemCreate, database: DatabaseDep, now: Now, response: Response
) -> SystemRead:
    with write_transaction(database) as session:
        system = system_service.create_system(session, body=body, actor=actor, now=now)
        brief = readiness_service.summary(session, system, now=now)
    response.headers["Location"] = f"/v1/systems/{system.key}"
    response.headers["ETag"] = system_service.etag(system)
    return to_read(system, brief)


@router.get(
    "",
    summary="List AI systems",
    description="Systems in registration order, filtered; every filter narrows the list.",
    responses=errors(400, 401, 403, 422),
)
def list_systems(
    _actor: Viewer,
    database: DatabaseDep,
    now: Now,
    stage: Stage | None = None,
    risk_tier: Tier | None = None,
    owner_team: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    label: Annotated[
        list[LabelFilter],
        Query(max_length=10, description="`name:value`; repeat to require several."),
    ] = [],  # noqa: B006  (FastAPI copies defaults per request)
    ready_for: Annotated[
        GateStage | None, Query(description="Only systems whose gate to this stage passes.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[SystemRead]:
    filters = system_service.SystemFilters(
        stage=stage.value if stage else None,
        risk_tier=risk_tier.value if risk_tier else None,
        owner_team=owner_team,
        labels=system_service.parse_label_filters(label),
        ready_for=ready_for.value if ready_for else None,
    )
    after = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        rows = system_service.list_systems(session, filters=filters, after=after, limit=limit)
        summaries = [readiness_service.summary(session, row, now=now) for row in rows]
    # Stored readiness only ever gets worse with time alone, so the filter in SQL keeps
    # every candidate and the ones that went stale since are checked afresh here.
    listed = [
        to_read(system, brief)
        for system, brief in zip(rows[:limit], summaries, strict=False)
        if ready_for is None or getattr(brief, f"{ready_for.value}_ready")
    ]
    return Page(
        items=listed,
        next_cursor=next_cursor_for(rows, limit, lambda system: system.id or 0),
    )


@router.get(
    "/{key}",
    summary="Get an AI system",
    description="The system with its derived tier and current readiness summary, with an ETag.",
    responses=errors(401, 403, 404),
)
def get_system(
    _actor: Viewer, key: KeyPath, database: DatabaseDep, now: Now, response: Response
) -> SystemRead:
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        brief = readiness_service.summary(session, system, now=now)
    response.headers["ETag"] = system_service.etag(system)
    return to_read(system, brief)


@router.patch(
    "/{key}",
    summary="Update an AI system",
    description=(
        "A JSON merge patch of the mutable fields: absent fields stay, null removes, `owner`"
        " and `labels` merge. `key`, `stage` and derived fields cannot be set. Send"
        " `If-Match` with the ETag to refuse a lost update (412). A team-scoped identity may"
        " patch only its teams' systems and move `owner.team` only to one of its teams"
        " (403 `out-of-scope`); a change that lowers the risk tier needs the approver role"
        " (403 `tier-lowering-needs-approver`), and every tier change appends"
        " `system.tier_changed`. An `external_ref` another system has is refused (409"
        " `external-ref-taken`)."
    ),
    responses={
        **errors(400, 401, 403, 404, 412, 422),
        409: {
            **errors(409)[409],
            "description": "Another system has the `external_ref` this patch sets"
            " (`external-ref-taken`).",
        },
    },
    openapi_extra=TEAM_SCOPED,
)
def patch_system(
    actor: Pipeline,
    key: KeyPath,
    body: SystemPatch,
    database: DatabaseDep,
    now: Now,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=200)] = None,
) -> SystemRead:
    with write_transaction(database) as session:
        system = system_service.lock_for_write(session, key, actor=actor, now=now)
        system = system_service.patch_system(
            session, system=system, patch=body, if_match=if_match, actor=actor, now=now
        )
        brief = readiness_service.summary(session, system, now=now)
    response.headers["ETag"] = system_service.etag(system)
    return to_read(system, brief)
