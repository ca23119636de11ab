from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.dependencies import Viewer
from app.clock import Now
from app.db import DatabaseDep, read_transaction
from app.openapi_docs import errors
from app.readiness.tiers import Tier
from app.reports import service as reports_service
from app.reports.schemas import Portfolio
from app.systems import service as system_service

router = APIRouter(prefix="/v1/reports", tags=["reports"])


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
    owner_team: Annotated[str | None, Query(max_length=100)] = None,
    risk_tier: Tier | None = None,
    label: Annotated[
        list[str], Query(max_length=10, description="`name:value`; repeat to require several.")
    ] = [],  # noqa: B006  (FastAPI copies defaults per request)
) -> Portfolio:
    filters = system_service.SystemFilters(
        risk_tier=risk_tier.value if risk_tier else None,
        owner_team=owner_team,
        labels=system_service.parse_label_filters(label),
    )
    with read_transaction(database) as session:
        return reports_service.portfolio(session, filters=filters, now=now)
