from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.readiness.schemas import BlockingItemRead
from app.schemas import NO_NUL
from app.vocabulary import GateStage, Stage

ALIAS_CREATED_EXAMPLE: dict[str, Any] = {
    "entity": "model_version_alias",
    "action": "created",
    "timestamp": "2026-03-02T09:00:00.000000+00:00",
    "data": {"name": "claims-triage", "alias": "champion", "version": "3"},
}


Word = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=NO_NUL)]
AliasName = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]
VersionName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]


class MlflowWebhookDelivery(BaseModel):
    """What MLflow POSTs for each model registry event it has a webhook for."""

    # Fields MLflow adds (`workspace` on a server with workspaces, new ones later) are let
    # through: a delivery that a newer MLflow sends is still read.
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [ALIAS_CREATED_EXAMPLE]},
    )

    entity: Word = Field(
        description="What changed: `model_version_alias` (the one handled), `model_version`,"
        " `registered_model`, `model_version_tag`, ..."
    )
    action: Word = Field(
        description="What happened to it: `created` (the one handled), `deleted`, `set`, ..."
    )
    timestamp: Word | None = Field(
        default=None, description="When MLflow sent it (ISO 8601); informative only."
    )
    data: dict[str, Any] = Field(
        description="The event's payload. For `model_version_alias.created`: `name` (the"
        " registered model), `alias` and `version` (a string, as MLflow sends it)."
    )


class AliasCreated(BaseModel):
    """`data` of a `model_version_alias.created` delivery."""

    model_config = ConfigDict(extra="ignore")

    name: ModelName
    alias: AliasName
    version: VersionName


class DeliveryOutcome(StrEnum):
    allowed = "allowed"
    denied = "denied"
    ignored = "ignored"
    replayed = "replayed"


class SystemDecision(BaseModel):
    system_key: str
    from_stage: Stage = Field(description="The stage the system was in when the alias came.")
    gate_check_id: int = Field(description="The gate check recorded for the alias's stage.")
    allowed: bool = Field(
        description="Whether the system may take this version into the alias's stage."
    )
    blocking: list[BlockingItemRead]
    # Optional in the document: FastAPI leaves nulls out of examples.
    transition_id: int | None = Field(
        default=None,
        description="The transition recorded; null when the system did not move (denied, or"
        " already in that stage or past it).",
    )


class MlflowActions(BaseModel):
    alias_removed: bool = Field(
        description="The denied alias was removed from the version (false: not denied, it"
        " had moved on already, or MLflow could not be reached)."
    )
    tag: str | None = Field(
        description="The value set as the version's `readiness.gate` tag, `allowed` or"
        " `denied`; null when it could not be set."
    )
    errors: list[str] = Field(description="What failed when calling MLflow, if anything.")


class MlflowWebhookResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "delivery_id": "0b7f4a52-7f35-4f7e-9f3c-2f4cf5d1d6a1",
                    "outcome": "denied",
                    "detail": "claims-triage version 3 may not be champion (production)."
                    " claims-triage is blocked by 1 item(s).",
                    "model": "claims-triage",
                    "version": "3",
                    "alias": "champion",
                    "target_stage": "production",
                    "systems": [
                        {
                            "system_key": "claims-triage",
                            "from_stage": "pilot",
                            "gate_check_id": 12,
                            "allowed": False,
                            "blocking": [
                                {
                                    "code": "approvals_missing",
                                    "detail": "1 approval(s) from distinct approvers needed"
                                    " for production, 0 valid",
                                }
                            ],
                        }
                    ],
                    "mlflow": {"alias_removed": True, "tag": "denied", "errors": []},
                }
            ]
        }
    )

    delivery_id: str
    outcome: DeliveryOutcome = Field(
        description="`allowed`: every linked system may take the version (and moved where"
        " its stage is before the alias's); `denied`: a gate blocks; `ignored`: another event,"
        " an alias mapped to no stage, or a model no system is linked to; `replayed`: this"
        " delivery id was taken before, nothing was done again."
    )
    detail: str
    model: str | None = None
    version: str | None = None
    alias: str | None = None
    target_stage: GateStage | None = None
    systems: list[SystemDecision] = Field(default_factory=list)
    mlflow: MlflowActions | None = Field(
        default=None,
        description="What was done in MLflow after the decision; null when"
        " READINESS_MLFLOW_TRACKING_URI is unset or there was nothing to do.",
    )
