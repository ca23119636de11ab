from fastapi import APIRouter, Request, Response

from app.auth.dependencies import BearerCredentials, authorize, checks_role_inline
from app.auth.roles import Role
from app.badges.render import badge_svg
from app.clock import Now
from app.db import DatabaseDep, read_transaction
from app.openapi_docs import errors
from app.readiness import service as readiness_service
from app.readiness.scoring import Level
from app.systems import service as system_service
from app.systems.dependencies import KeyPath

router = APIRouter(tags=["readiness"])

SVG_MEDIA_TYPE = "image/svg+xml"
BADGE_ROLE = Role.viewer


@router.get(
    "/v1/systems/{key}/badge.svg",
    summary="Get a system's readiness badge",
    description=(
        "A small SVG with the system's readiness level and score now, for READMEs and"
        " developer portals. Needs a viewer key, unless the service runs with"
        " `READINESS_PUBLIC_BADGES=true`."
    ),
    response_class=Response,
    responses={
        200: {"content": {SVG_MEDIA_TYPE: {"schema": {"type": "string"}}}},
        **errors(401, 403, 404, 422),
    },
    openapi_extra=checks_role_inline(BADGE_ROLE),
)
def get_badge(
    request: Request,
    credentials: BearerCredentials,
    key: KeyPath,
    database: DatabaseDep,
    now: Now,
) -> Response:
    # Checked in this thread call, so it can be skipped when badges are public.
    if not request.app.state.settings.readiness_public_badges:
        authorize(request, credentials, BADGE_ROLE, now=now)
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        brief = readiness_service.summary(session, system, now=now)
    return Response(badge_svg(Level(brief.level), brief.score), media_type=SVG_MEDIA_TYPE)
