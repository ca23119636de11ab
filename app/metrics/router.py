from fastapi import APIRouter, Request, Response

from app.auth.dependencies import BearerCredentials, authorize, checks_role_inline
from app.auth.roles import Role
from app.clock import Now
from app.db import DatabaseDep, read_transaction
from app.metrics import service as metrics_service
from app.openapi_docs import NO_SECURITY, errors

router = APIRouter(tags=["health"])

PROMETHEUS_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}
# system_metrics checks its role in its own body, since a setting can waive the check.
SYSTEM_METRICS_ROLE = Role.viewer


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "Portfolio gauges for Prometheus and Grafana (systems by stage and tier, drifted"
        " systems, stale evidence, stuck pilots, the controls blocking most systems per"
        " gate) and request counts and latencies by route. No series per system, so the"
        " scrape stays the same size however many systems there are; those are at"
        " `/metrics/systems`. No API key needed."
    ),
    response_class=Response,
    responses={200: PROMETHEUS_TEXT},
    openapi_extra=NO_SECURITY,
)
def metrics(database: DatabaseDep, now: Now) -> Response:
    with read_transaction(database) as session:
        body = metrics_service.render(session, now=now)
    return Response(body, media_type=metrics_service.PROMETHEUS_CONTENT_TYPE)


@router.get(
    "/metrics/systems",
    summary="Per-system Prometheus metrics",
    description=(
        "Each system's readiness score now (`readiness_score`) and whether each gate passes"
        " now (`readiness_gate_ready`), labelled with its key, tier and stage: three lines"
        " per system, so the scrape grows with the portfolio. Needs a viewer key, unless"
        " the service runs with `READINESS_PUBLIC_SYSTEM_METRICS=true`."
    ),
    response_class=Response,
    responses={200: PROMETHEUS_TEXT, **errors(401, 403)},
    openapi_extra=checks_role_inline(SYSTEM_METRICS_ROLE),
)
def system_metrics(
    request: Request, credentials: BearerCredentials, database: DatabaseDep, now: Now
) -> Response:
    if not request.app.state.settings.readiness_public_system_metrics:
        authorize(request, credentials, SYSTEM_METRICS_ROLE, now=now)
    with read_transaction(database) as session:
        body = metrics_service.render_systems(session, now=now)
    # An answer to a keyed request, like those under /v1/: never kept by a shared cache.
    headers = {"Cache-Control": "no-store"}
    return Response(body, media_type=metrics_service.PROMETHEUS_CONTENT_TYPE, headers=headers)
