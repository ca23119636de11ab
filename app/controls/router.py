from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.auth.dependencies import Viewer
from app.auth.roles import Role
from app.controls.catalogue import CONTROLS, SatisfiedBy
from app.db import DatabaseDep, read_transaction
from app.openapi_docs import errors
from app.policies import service as policy_service

router = APIRouter(prefix="/v1/controls", tags=["controls"])


class ControlInfo(BaseModel):
    key: str
    title: str
    description: str
    satisfied_by: SatisfiedBy
    attested_by: Role | None = Field(
        description=(
            "The lowest role the active policy lets record this control's evidence, when it"
            " names one (`attested_by`); null: any role that writes evidence (pipeline)."
        )
    )


class ControlCatalogue(BaseModel):
    items: list[ControlInfo]
    next_cursor: str | None = None


@router.get(
    "",
    summary="List the controls",
    description=(
        "The fixed catalogue of readiness controls, in a stable order; one page. Each says"
        " which role the active policy needs to attest it."
    ),
    responses=errors(401, 403),
)
def list_controls(_actor: Viewer, database: DatabaseDep) -> ControlCatalogue:
    with read_transaction(database) as session:
        rules = policy_service.active_rules(session).rules
    return ControlCatalogue(
        items=[
            ControlInfo(
                key=control.key,
                title=control.title,
                description=control.description,
                satisfied_by=control.satisfied_by,
                attested_by=rules.attesting_role(control.key),
            )
            for control in CONTROLS
        ]
    )
