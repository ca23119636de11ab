from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.controls.catalogue import ControlKey
from app.lifecycle.stages import GateStage, Stage
from app.models import Transition
from app.readiness.schemas import BlockingItemRead
from app.readiness.tiers import Tier
from app.schemas import Actor, Release, RequestModel, UtcDateTime

MIN_OVERRIDE_JUSTIFICATION = 20


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The 20-character minimum is checked after the role, so a non-admin hears 403 first.
    justification: str = Field(
        min_length=1,
        max_length=5000,
        description=(
            f"Why the failing gate is pushed through, at least {MIN_OVERRIDE_JUSTIFICATION}"
            " characters; recorded and reported."
        ),
    )


class GateCheckCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"target_stage": "production", "release": {"version": "2.4.1"}}]
        },
    )

    target_stage: GateStage
    release: Release | None = None


class GateCheckRead(BaseModel):
    id: int
    system_key: str
    allowed: bool = Field(
        description="The move from the current stage is valid and its gate passes now."
    )
    current_stage: Stage
    target_stage: GateStage
    move_valid: bool = Field(
        description="The lifecycle allows current_stage -> target_stage (a release move, when"
        " they are the same stage)."
    )
    release_move: bool = Field(
        default=False,
        description="The system is in target_stage already: a new release entering it,"
        " judged by that stage's gate.",
    )
    score: float
    required_score: float
    blocking: list[BlockingItemRead]
    policy_version: int
    release: Release | None
    checked_at: datetime


class TransitionCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to_stage": "pilot",
                    "reason": "Pilot with the Leeds claims team",
                    "expected_stage": "proposed",
                    "release": {"version": "2.4.1", "uri": "https://registry.example.com/m/7"},
                }
            ]
        },
    )

    to_stage: Stage
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]
    expected_stage: Stage | None = Field(
        default=None, description="Refuse (409 stage-conflict) unless the system is here."
    )
    release: Release | None = None
    override: Override | None = Field(
        default=None, description="Admin only: push through a failing gate."
    )


class TransitionRead(BaseModel):
    id: int
    system_key: str
    from_stage: Stage
    to_stage: Stage
    reason: str
    release: Release | None
    gate: GateStage | None = Field(description="The gate the move had to pass, if any.")
    score: float
    policy_version: int
    blocking: list[BlockingItemRead] = Field(
        description="Items that blocked the gate at the time (non-empty only for overrides)."
    )
    override: Override | None
    actor: Actor
    occurred_at: datetime


class Decision(StrEnum):
    approve = "approve"
    reject = "reject"


class ApprovalCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"target_stage": "production", "decision": "approve", "comment": "Risk OK"}
            ]
        },
    )

    target_stage: GateStage
    decision: Decision
    comment: str | None = Field(default=None, max_length=5000)


class ClassificationCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"tier": "high", "comment": "Touches money; reviewed with the DPO"}]
        },
    )

    tier: Tier = Field(description="The tier confirmed: must be the system's current one.")
    comment: str | None = Field(default=None, max_length=5000)


class ClassificationRead(BaseModel):
    id: int
    system_key: str
    tier: Tier
    comment: str | None
    confirmed_by: Actor
    confirmed_at: datetime


class ApprovalRead(BaseModel):
    id: int
    system_key: str
    target_stage: GateStage
    decision: Decision
    comment: str | None
    approver: Actor
    revoked: bool = Field(
        description=(
            "Given with an API key since revoked: an approve no longer counts, a reject still"
            " blocks. Always false for OIDC identities, which have no revocation list."
        )
    )
    created_at: datetime


class WaiverCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "control": "training",
                    "justification": "Operators trained on the previous version; refresh booked",
                    "expires_at": "2027-01-31T00:00:00Z",
                }
            ]
        },
    )

    control: ControlKey
    justification: str = Field(min_length=1, max_length=5000)
    expires_at: UtcDateTime = Field(description="In the future, at most 90 days ahead.")


class WaiverRead(BaseModel):
    id: int
    system_key: str
    control: ControlKey
    justification: str
    expires_at: datetime
    active: bool = Field(
        description="Counts now: not expired, not revoked, and its granter's key not revoked."
    )
    granted_by: Actor
    granted_by_revoked: bool = Field(
        description=(
            "Granted with an API key since revoked: the waiver no longer counts. Always false"
            " for OIDC identities, which have no revocation list."
        )
    )
    granted_at: datetime
    revoked_at: datetime | None
    revoked_by: Actor | None


class ReleaseRead(BaseModel):
    version: str
    uri: str | None
    stage: Stage
    entered_at: datetime = Field(description="When the transition naming it was recorded.")
    left_at: datetime | None = Field(
        description="When the system next moved (stage or release); null: it is there now."
    )
    transition_id: int

    @classmethod
    def of(cls, row: Transition, left_at: datetime | None) -> "ReleaseRead":
        assert row.release_version is not None
        assert row.id is not None
        return cls(
            version=row.release_version,
            uri=row.release_uri,
            stage=Stage(row.to_stage),
            entered_at=row.occurred_at,
            left_at=left_at,
            transition_id=row.id,
        )


class StageAt(BaseModel):
    system_key: str
    at: datetime
    stage: Stage
    release: Release | None
    since: datetime = Field(description="When the system entered that stage.")
