from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.auth.dependencies import Viewer
from app.clock import Now
from app.db import DatabaseDep, read_transaction
from app.openapi_docs import errors
from app.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_int_cursor, encode_cursor
from app.readiness.tiers import Tier
from app.reports import service as reports_service
from app.reports.schemas import DriftPage, GapsReport, Portfolio
from app.schemas import NO_NUL
from app.systems import service as system_service
from app.systems.schemas import LabelFilter

router = APIRouter(prefix="/v1/reports", tags=["reports"])


# `async`: parsing only, resolved on the event loop without a worker thread.
async def report_filters(
    owner_team: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    risk_tier: Tier | None = None,
    label: Annotated[
        list[LabelFilter],
        Query(max_length=10, description="`name:value`; repeat to require several."),
    ] = [],  # noqa: B006  (FastAPI copies defaults per request)
) -> system_service.SystemFilters:
    return system_service.SystemFilters(
        risk_tier=risk_tier.value if risk_tier else None,
        owner_team=owner_team,
        labels=system_service.parse_label_filters(label),
    )


ReportFilters = Annotated[system_service.SystemFilters, Depends(report_filters)]


@router.get(
    "/portfolio",
    summary="Portfolio report",
    description=(
        "The whole portfolio at once: systems by stage and tier, average score, how many"
        " are ready for their next stage, drifted production systems, the controls blocking"
        " most systems per gate, stale evidence, stuck pilots, pilot outcomes and findings,"
        " and overrides in the last 90 days. Computed with aggregate queries."
    ),
    responses=errors(401, 403, 422),
)
def get_portfolio(
    _actor: Viewer,
    database: DatabaseDep,
    now: Now,
    filters: ReportFilters,
) -> Portfolio:
    with read_transaction(database) as session:
        return reports_service.portfolio(session, filters=filters, now=now)


@router.get(
    "/drift",
    summary="Drift report",
    description=(
        "Systems in production whose production gate no longer passes (evidence expired,"
        " a new policy, a finding, an approval lapsed), with what blocks them now. Time"
        " alone is enough: evidence that expired without any write is found too. A page may"
        " hold fewer items than `limit` while `next_cursor` says more candidates follow."
    ),
    responses=errors(400, 401, 403, 422),
)
def get_drift(
    _actor: Viewer,
    database: DatabaseDep,
    now: Now,
    filters: ReportFilters,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> DriftPage:
    after = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        items, more = reports_service.drift(
            session, filters=filters, now=now, after=after, limit=limit
        )
    return DriftPage(items=items, next_cursor=encode_cursor(more) if more is not None else None)


@router.get(
    "/gaps",
    summary="Gaps report",
    description=(
        "Why systems stall: for each gate, the controls blocking the systems that head for"
        " it (proposed ones for the pilot gate; pilot, suspended and production ones for the"
        " production gate), how many systems each blocks, by risk tier and by reason."
        " Computed with aggregate queries over stored readiness."
    ),
    responses=errors(401, 403, 422),
)
def get_gaps(
    _actor: Viewer,
    database: DatabaseDep,
    now: Now,
    filters: ReportFilters,
) -> GapsReport:
    with read_transaction(database) as session:
        return reports_service.gaps(session, filters=filters, now=now)
