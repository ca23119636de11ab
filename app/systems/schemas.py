from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.lifecycle.stages import Stage
from app.readiness.scoring import Level
from app.readiness.tiers import ImpactArea, Oversight, Tier, TierRule
from app.schemas import KeysByPattern, Release, RequestModel, TeamName

SYSTEM_KEY_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
LABEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$"
MAX_LABELS = 50

# The patterns bound the length too; max_length states it in the document, where every
# string a client sends has a maxLength (tests/security/test_bounds.py).
SystemKey = Annotated[str, StringConstraints(pattern=SYSTEM_KEY_PATTERN, max_length=63)]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_NAME_PATTERN, max_length=63)]
LabelValue = Annotated[str, StringConstraints(max_length=200)]
Text = Annotated[str, StringConstraints(max_length=5000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# uniqueItems: documented as the validator below enforces it.
ImpactAreas = Annotated[
    list[ImpactArea],
    Field(min_length=1, max_length=len(ImpactArea), json_schema_extra={"uniqueItems": True}),
]
# A `label` query filter, `name:value`: validated, so the document states its form too.
LabelFilter = Annotated[str, StringConstraints(pattern=r"^[^:\x00]+:[^\x00]*$", max_length=300)]


class Owner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: TeamName
    contact: str = Field(min_length=1, max_length=200)


def _unique_areas(areas: list[ImpactArea] | None) -> list[ImpactArea] | None:
    if areas is not None and len(set(areas)) != len(areas):
        raise ValueError("impact_areas lists an area twice")
    return areas


_EXAMPLE: dict[str, Any] = {
    "key": "claims-triage",
    "name": "Claims triage assistant",
    "purpose": "Rank incoming insurance claims for human review.",
    "scope": "Suggests a priority; never approves or denies a claim.",
    "owner": {"team": "claims-platform", "contact": "claims-ai@example.com"},
    "impact_areas": ["money", "customer_service"],
    "oversight": "human_reviews_all",
    "labels": {"domain": "claims"},
}


EXTERNAL_REF_DESCRIPTION = (
    "What links the system to a thing outside the service, such as `mlflow:models/<name>`"
    " for an MLflow registered model. At most one system has each value: another system's"
    " is refused (409 `external-ref-taken`)."
)


class SystemCreate(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    key: SystemKey = Field(description="Stable identifier; immutable.")
    name: Name
    description: Text | None = None
    purpose: Text | None = None
    scope: Text | None = None
    owner: Owner | None = None
    impact_areas: ImpactAreas
    oversight: Oversight
    declared_risk_tier: Tier | None = Field(
        default=None, description="Raises the derived tier; never lowers it."
    )
    labels: Annotated[dict[LabelName, LabelValue], KeysByPattern] = Field(
        default_factory=dict, max_length=MAX_LABELS
    )
    external_ref: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description=EXTERNAL_REF_DESCRIPTION
    )

    _areas = field_validator("impact_areas")(_unique_areas)


class OwnerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: TeamName | None = None
    contact: str | None = Field(default=None, min_length=1, max_length=200)


class SystemPatch(RequestModel):
    """A JSON merge patch (RFC 7396): absent fields stay, null clears, objects merge."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"scope": "Suggests a priority only.", "labels": {"domain": None}}]
        },
    )

    name: Name | None = None
    description: Text | None = None
    purpose: Text | None = None
    scope: Text | None = None
    owner: OwnerPatch | None = None
    impact_areas: ImpactAreas | None = None
    oversight: Oversight | None = None
    declared_risk_tier: Tier | None = None
    labels: Annotated[dict[LabelName, LabelValue | None], KeysByPattern] | None = Field(
        default=None, max_length=MAX_LABELS
    )
    external_ref: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description=EXTERNAL_REF_DESCRIPTION
    )

    _areas = field_validator("impact_areas")(_unique_areas)


class RiskTierRule(BaseModel):
    rule: TierRule
    detail: str


class ConfirmedClassification(BaseModel):
    tier: Tier
    confirmation_id: int = Field(description="The POST .../classification that confirmed it.")


class SystemRead(BaseModel):
    key: str
    name: str
    description: str | None
    purpose: str | None
    scope: str | None
    owner: Owner | None
    impact_areas: list[ImpactArea]
    oversight: Oversight
    declared_risk_tier: Tier | None
    risk_tier: Tier
    risk_tier_rule: RiskTierRule
    classification: ConfirmedClassification | None = Field(
        default=None,
        description="The current risk tier as a person confirmed it; null until confirmed,"
        " and again after any tier change.",
    )
    labels: dict[str, str]
    external_ref: str | None
    stage: Stage
    current_release: Release | None = Field(
        default=None,
        description="The release current in `stage`: the one the system's last transition"
        " named (null when it named none).",
    )
    score: float = Field(description="The current readiness score.")
    level: Level
    pilot_ready: bool
    production_ready: bool
    version: int = Field(description="Changes with every update; the ETag carries it.")
    created_at: datetime
    updated_at: datetime
