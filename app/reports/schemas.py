from datetime import datetime

from pydantic import BaseModel, Field

from app.lifecycle.stages import GateStage, Stage
from app.readiness.schemas import BlockingItemRead
from app.readiness.tiers import Tier


class StageTierCount(BaseModel):
    stage: Stage
    tier: Tier
    systems: int


class BlockingControl(BaseModel):
    control: str
    systems: int = Field(description="Systems whose gate this control blocks.")


class GateBlockers(BaseModel):
    gate: GateStage
    controls: list[BlockingControl]


class StuckPilot(BaseModel):
    pilot_id: int
    system_key: str
    name: str
    started_at: datetime
    planned_end: datetime | None


class OverrideRecord(BaseModel):
    system_key: str
    from_stage: Stage
    to_stage: Stage
    actor: str
    justification: str
    occurred_at: datetime


class Portfolio(BaseModel):
    generated_at: datetime
    systems: int
    by_stage_and_tier: list[StageTierCount]
    average_score: float | None
    ready_for_next_stage: int = Field(
        description="Proposed systems whose pilot gate passes, and pilot or suspended ones"
        " whose production gate passes."
    )
    drifted: int = Field(description="Systems in production whose production gate fails.")
    top_blocking_controls: list[GateBlockers]
    stale_evidence: int = Field(description="Current evidence that is expired or too old.")
    systems_with_stale_evidence: int
    stuck_pilots: list[StuckPilot] = Field(
        description="Running past planned_end or longer than the policy's max_pilot_days."
    )
    pilot_outcomes: dict[str, int] = Field(description="Concluded pilots by outcome.")
    findings: dict[str, int] = Field(description="Findings reported by pilots, by kind.")
    overrides_last_90_days: list[OverrideRecord]


class DriftedSystem(BaseModel):
    system_key: str
    risk_tier: Tier
    score: float
    blocking: list[BlockingItemRead] = Field(description="Why its production gate fails now.")


class DriftPage(BaseModel):
    items: list[DriftedSystem]
    next_cursor: str | None = None


class ControlGap(BaseModel):
    control: str
    systems: int = Field(description="Systems heading for the gate's stage that it blocks.")
    by_tier: dict[str, int] = Field(description="Those systems by risk tier (every tier named).")
    by_reason: dict[str, int] = Field(
        description="Those systems by blocking code: missing, not met, partial, stale..."
    )


class GateGaps(BaseModel):
    gate: GateStage
    stages: list[Stage] = Field(description="The stages whose systems head for this gate.")
    systems: int = Field(description="Systems in those stages.")
    systems_by_tier: dict[str, int]
    controls: list[ControlGap] = Field(description="Most systems blocked first.")


class GapsReport(BaseModel):
    generated_at: datetime
    gates: list[GateGaps]
