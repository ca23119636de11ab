from fastapi import APIRouter
from pydantic import BaseModel

from app.auth.dependencies import Viewer
from app.controls.catalogue import CONTROLS, SatisfiedBy
from app.openapi_docs import errors

router = APIRouter(prefix="/v1/controls", tags=["controls"])


class ControlInfo(BaseModel):
    key: str
    title: str
    description: str
    satisfied_by: SatisfiedBy


class ControlCatalogue(BaseModel):
    items: list[ControlInfo]
    next_cursor: str | None = None


_CATALOGUE = ControlCatalogue(
    items=[
        ControlInfo(
            key=control.key,
            title=control.title,
            description=control.description,
            satisfied_by=control.satisfied_by,
        )
        for control in CONTROLS
    ]
)


@router.get(
    "",
    summary="List the controls",
    description="The fixed catalogue of readiness controls, in a stable order; one page.",
    responses=errors(401, 403),
)
def list_controls(_actor: Viewer) -> ControlCatalogue:
    return _CATALOGUE
