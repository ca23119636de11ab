from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, WithJsonSchema

from app.readiness.scoring import BlockingCode, ControlStatus, Level
from app.readiness.tiers import Tier, TierRule
from app.schemas import Release
from app.vocabulary import GateStage, Stage

# The codes grow as the rules do (v1.2 added release_evidence_missing), so the document lists
# them as an extensible set: a client generated from it accepts a code it does not know yet
# instead of failing to read the whole answer.
BlockingCodeRead = Annotated[
    BlockingCode,
    WithJsonSchema(
        {
            "type": "string",
            "title": "BlockingCode",
            "description": "What blocks the gate; new codes may be added, so treat one you do"
            " not know as blocking. Known: "
            + ", ".join(f"`{code.value}`" for code in BlockingCode)
            + ".",
            "x-extensible-enum": [code.value for code in BlockingCode],
        }
    ),
]


class BlockingItemRead(BaseModel):
    code: BlockingCodeRead
    control: str | None = None
    detail: str


class GateRead(BaseModel):
    ready: bool
    required_score: float
    blocking: list[BlockingItemRead]


class ControlRead(BaseModel):
    control: str
    status: ControlStatus
    points: float | None = Field(
        description="Points earned (met 1, partial 0.5); null when not_applicable."
    )
    weight: float
    required_for: list[GateStage]


class TierRuleRead(BaseModel):
    rule: TierRule = Field(description="Which rule set the tier.")
    detail: str


class GatesRead(BaseModel):
    pilot: GateRead
    production: GateRead


class OpenFindingRead(BaseModel):
    finding: str
    control: str
    pilot_id: int


class ReadinessRead(BaseModel):
    system_key: str
    stage: Stage
    risk_tier: Tier
    risk_tier_rule: TierRuleRead
    score: float = Field(ge=0, le=100)
    level: Level
    policy_version: int
    rules_version: int = Field(
        description="The version of the service's readiness rules (how controls score, tiers"
        " derive and gates decide) this answer was evaluated by."
    )
    release: str | None = Field(
        default=None,
        description="The release this answer judges (`?release=`): release-bound controls"
        " count only evidence naming it or naming none. Null: judged without a release.",
    )
    current_release: Release | None = Field(
        default=None,
        description="The release current in the system's stage: the one its last transition"
        " named (null when it named none).",
    )
    evaluated_at: datetime
    valid_until: datetime | None = Field(
        description="When time alone (evidence going stale) next changes this answer."
    )
    controls: list[ControlRead]
    gates: GatesRead
    open_findings: list[OpenFindingRead] = Field(
        description="Pilot findings whose control has not been updated since; they block"
        " the production gate."
    )


class ReadinessSnapshotRead(BaseModel):
    score: float
    level: Level
    pilot_ready: bool
    production_ready: bool
    policy_version: int
    rules_version: int | None = Field(
        description="The rules version the answer was evaluated by; null for snapshots taken"
        " before rules versions were recorded."
    )
    recorded_at: datetime
