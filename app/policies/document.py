"""The policy document: what a tier needs for each gate. Validated here, used by scoring."""

from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictFloat,
    model_validator,
)

from app.auth.roles import Role
from app.controls.catalogue import SYSTEM_FIELD_CONTROLS, ControlKey
from app.schemas import JsonInt, RequestModel, WholeNumber
from app.vocabulary import TIER_ORDER, GateStage, Tier

# Statements a pipeline cannot make about itself: a risk review is signed by someone
# accountable, an approval path confirmed by an approver.
DEFAULT_ATTESTED_BY: dict[str, str] = {"risk_review": "approver", "approval_path": "approver"}
# Tiers whose approvals must come from outside the owner team, unless a policy says otherwise.
INDEPENDENT_APPROVAL_TIERS = frozenset({Tier.high, Tier.critical})


class AttestingRole(StrEnum):
    """Roles that may record evidence at all, so the ones `attested_by` can name."""

    pipeline = "pipeline"
    approver = "approver"
    admin = "admin"


class PilotOutcome(StrEnum):
    pass_ = "pass"
    warning = "warning"
    fail = "fail"


ControlList = Annotated[
    list[ControlKey], Field(max_length=len(ControlKey), json_schema_extra={"uniqueItems": True})
]


# allow_inf_nan=False: NaN is refused as "not a finite number", not as "above 100".
Weight = Annotated[StrictFloat, Field(ge=0, le=100, allow_inf_nan=False)]


def _no_duplicates(controls: list[ControlKey], where: str) -> None:
    if len(set(controls)) != len(controls):
        raise ValueError(f"{where} lists a control twice")


class StageRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict types: JSON numbers and booleans only, as the document says (no "50", no 0 for false).
    # allow_inf_nan=False: NaN is refused as "not a finite number", not as "above 100".
    min_score: StrictFloat = Field(
        ge=0, le=100, allow_inf_nan=False, description="Lowest score that passes the gate."
    )
    required: ControlList = Field(
        description="Controls that must be met (or waived) for the gate to pass."
    )
    approvals: JsonInt = Field(
        default=0, ge=0, le=10, description="Distinct approvers the gate needs."
    )

    @model_validator(mode="after")
    def _unique(self) -> Self:
        _no_duplicates(self.required, "required")
        return self


class TierPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pilot: StageRule
    production: StageRule
    pilot_before_production: StrictBool = Field(
        default=False, description="A concluded pilot is needed before production."
    )
    accepted_pilot_outcomes: list[PilotOutcome] = Field(
        default_factory=list,
        max_length=3,
        description="Outcomes of the concluded pilot that satisfy the pilot rule.",
    )
    evidence_fresh_days: Annotated[int, Strict(), Field(ge=1, le=3650), WholeNumber] | None = Field(
        default=None, description="Evidence older than this is stale; null: never."
    )
    non_waivable: ControlList = Field(
        default_factory=list, description="Controls that cannot be waived at this tier."
    )
    not_applicable_forbidden: ControlList = Field(
        default_factory=list,
        description="Controls that may not be marked not_applicable at this tier.",
    )
    independent_approval: StrictBool = Field(
        default=False,
        description=(
            "Approvals must come from outside the owner team: an approver scoped to it is"
            " refused (403 not-independent). Left out of a policy: true for high and"
            " critical, false below."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _no_duplicates(self.non_waivable, "non_waivable")
        _no_duplicates(self.not_applicable_forbidden, "not_applicable_forbidden")
        if self.pilot_before_production and not self.accepted_pilot_outcomes:
            raise ValueError("pilot_before_production needs at least one accepted outcome")
        return self

    def required_for(self, stage: str) -> list[ControlKey]:
        return self.pilot.required if stage == "pilot" else self.production.required


class PolicyRules(RequestModel):
    """Everything a policy version decides; the server adds version and activation."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    weights: dict[ControlKey, Weight] = Field(
        default_factory=dict, description="Weight per control; controls not listed weigh 1."
    )
    approval_validity_days: JsonInt = Field(default=30, ge=1, le=365)
    max_waiver_days: JsonInt = Field(default=90, ge=1, le=90)
    max_pilot_days: JsonInt = Field(
        default=90, ge=1, le=3650, description="A pilot running longer than this is stuck."
    )
    attested_by: dict[ControlKey, AttestingRole] = Field(
        default_factory=lambda: {
            ControlKey(control): AttestingRole(role)
            for control, role in DEFAULT_ATTESTED_BY.items()
        },
        description=(
            "The lowest role that may record each control's evidence; controls not listed"
            " need pipeline. Left out: risk_review and approval_path need approver."
        ),
    )
    release_bound: ControlList = Field(
        default_factory=lambda: [ControlKey.testing_evidence],
        description=(
            "Controls whose evidence belongs to one release: judging release R, such a control"
            " counts its latest evidence naming R or naming no release; evidence of other"
            " releases does not count (`release_evidence_missing` where a gate requires it)."
            " Left out: testing_evidence."
        ),
    )
    classification_confirmed_for: list[GateStage] = Field(
        default_factory=lambda: [GateStage.production],
        max_length=len(GateStage),
        json_schema_extra={"uniqueItems": True},
        description=(
            "Gates that stay closed (`classification_unconfirmed`) until a person has"
            " confirmed the system's current risk tier (POST .../classification); any tier"
            " change voids the confirmation. Left out: production. Policy versions published"
            " before this field existed require no confirmation."
        ),
    )
    # Keys are tiers, so at least as many keys as tiers is every tier (what _every_tier checks).
    tiers: dict[Tier, TierPolicy] = Field(json_schema_extra={"minProperties": len(TIER_ORDER)})

    @model_validator(mode="before")
    @classmethod
    def _tier_defaults(cls, data: Any) -> Any:
        # A tier that does not say whether approvals must be independent gets its tier's
        # default, so a document written before the field keeps its meaning.
        tiers = data.get("tiers") if isinstance(data, dict) else None
        if not isinstance(tiers, dict):
            return data
        filled = {
            tier: {"independent_approval": tier in INDEPENDENT_APPROVAL_TIERS, **rule}
            if isinstance(rule, dict) and "independent_approval" not in rule
            else rule
            for tier, rule in tiers.items()
        }
        return {**data, "tiers": filled}

    @model_validator(mode="after")
    def _every_tier(self) -> Self:
        missing = [tier.value for tier in TIER_ORDER if tier not in self.tiers]
        if missing:
            raise ValueError(f"tiers is missing {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _attested_by_evidence(self) -> Self:
        fields = sorted(
            control.value for control in self.attested_by if control in SYSTEM_FIELD_CONTROLS
        )
        if fields:
            raise ValueError(
                f"attested_by names {', '.join(fields)}, which the system's own fields satisfy,"
                " not evidence"
            )
        return self

    @model_validator(mode="after")
    def _confirmed_gates_once(self) -> Self:
        if len(set(self.classification_confirmed_for)) != len(self.classification_confirmed_for):
            raise ValueError("classification_confirmed_for lists a gate twice")
        return self

    @model_validator(mode="after")
    def _release_bound_evidence(self) -> Self:
        _no_duplicates(self.release_bound, "release_bound")
        fields = sorted(
            control.value for control in self.release_bound if control in SYSTEM_FIELD_CONTROLS
        )
        if fields:
            raise ValueError(
                f"release_bound names {', '.join(fields)}, which the system's own fields"
                " satisfy, not evidence of a release"
            )
        return self

    def attesting_role(self, control: str) -> Role | None:
        """The lowest role that may record evidence for `control`, when the policy names one."""
        role = self.attested_by.get(ControlKey(control))
        return Role(role.value) if role is not None else None

    def weight(self, control: str) -> float:
        return self.weights.get(ControlKey(control), 1.0)

    def tier(self, tier: Tier | str) -> TierPolicy:
        return self.tiers[Tier(tier)]
