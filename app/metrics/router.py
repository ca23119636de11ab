from fastapi import APIRouter, Response

from app.clock import Now
from app.db import DatabaseDep, read_transaction
from app.metrics import service as metrics_service
from app.openapi_docs import NO_SECURITY

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "Gauges for Prometheus and Grafana: systems by stage and tier, and each system's"
        " readiness score and gate readiness now. No API key needed."
    ),
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    openapi_extra=NO_SECURITY,
)
def metrics(database: DatabaseDep, now: Now) -> Response:
    with read_transaction(database) as session:
        body = metrics_service.render(session, now=now)
    return Response(body, media_type=metrics_service.PROMETHEUS_CONTENT_TYPE)
