"""The scoring rule and the two gates (docs/domain.md, Scoring rule): pure, deterministic.

Everything here is a function of plain data, so it can be tested exhaustively; the service
loads the facts, calls `evaluate`, and stores what comes back.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from app.controls.catalogue import CONTROL_KEYS, SYSTEM_FIELD_CONTROLS
from app.policies.document import PolicyRules, TierPolicy
from app.readiness.tiers import Tier
from app.vocabulary import GateStage


class EvidenceStatus(StrEnum):
    met = "met"
    partial = "partial"
    not_met = "not_met"
    not_applicable = "not_applicable"


class ControlStatus(StrEnum):
    """What a control counts as in an evaluation."""

    met = "met"
    partial = "partial"
    not_met = "not_met"
    not_applicable = "not_applicable"
    missing = "missing"
    stale = "stale"
    waived = "waived"


class Level(StrEnum):
    production_ready = "production_ready"
    pilot_ready = "pilot_ready"
    not_ready = "not_ready"


class BlockingCode(StrEnum):
    control_missing = "control_missing"
    control_not_met = "control_not_met"
    control_partial = "control_partial"
    control_stale = "control_stale"
    score_below_threshold = "score_below_threshold"
    pilot_required = "pilot_required"
    pilot_outcome_insufficient = "pilot_outcome_insufficient"
    approvals_missing = "approvals_missing"
    approval_rejected = "approval_rejected"
    open_finding = "open_finding"
    release_evidence_missing = "release_evidence_missing"
    classification_unconfirmed = "classification_unconfirmed"


POINTS: dict[ControlStatus, float] = {
    ControlStatus.met: 1.0,
    ControlStatus.waived: 1.0,
    ControlStatus.partial: 0.5,
    ControlStatus.not_met: 0.0,
    ControlStatus.missing: 0.0,
    ControlStatus.stale: 0.0,
}

# Items a person's decision clears (approvals, the confirmation of the tier) never keep a
# system from being called ready: `level` says whether the evidence is there.
APPROVAL_CODES = frozenset(
    {
        BlockingCode.approvals_missing,
        BlockingCode.approval_rejected,
        BlockingCode.classification_unconfirmed,
    }
)


@dataclass(frozen=True)
class EvidenceFact:
    status: EvidenceStatus
    recorded_at: datetime
    expires_at: datetime | None = None
    source: str = "api"
    release: str | None = None  # null: the evidence counts for every release


@dataclass(frozen=True)
class PilotFact:
    """The latest concluded pilot of the system, if any."""

    pilot_id: int
    outcome: str


@dataclass(frozen=True)
class ApprovalFacts:
    """Valid approvals for one target stage: distinct approvers, and whether any rejects."""

    approvers: int = 0
    rejected_by: tuple[str, ...] = ()
    # When each counted approval lapses: time alone can reopen an approvals_missing item.
    expires_at: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class FindingFact:
    control: str
    pilot_id: int
    finding: str


@dataclass(frozen=True)
class ReadinessFacts:
    tier: Tier
    system_fields: dict[str, bool]
    evidence: dict[str, EvidenceFact]
    now: datetime
    waivers: dict[str, datetime] = field(default_factory=dict)
    pilot: PilotFact | None = None
    approvals: Mapping[GateStage, ApprovalFacts] = field(default_factory=dict)
    open_findings: tuple[FindingFact, ...] = ()
    # A person confirmed the current risk tier (true where nobody needs to: the default
    # for facts that do not say).
    classification_confirmed: bool = True
    # The release judged for (null: judged without one, every current version counting).
    release: str | None = None
    # For a release-bound control whose current version names another release than
    # `release`: its latest earlier version that counts for `release`, when there is one.
    release_evidence: Mapping[str, EvidenceFact] = field(default_factory=dict)


@dataclass(frozen=True)
class BlockingItem:
    code: BlockingCode
    detail: str
    control: str | None = None


@dataclass(frozen=True)
class ControlResult:
    control: str
    status: ControlStatus
    points: float | None
    weight: float
    required_for: tuple[GateStage, ...]


@dataclass(frozen=True)
class GateResult:
    stage: GateStage
    ready: bool
    required_score: float
    blocking: tuple[BlockingItem, ...]


@dataclass(frozen=True)
class Evaluation:
    tier: Tier
    score: float
    level: Level
    controls: tuple[ControlResult, ...]
    gates: dict[GateStage, GateResult]
    # The earliest moment after `now` at which time alone changes this evaluation.
    valid_until: datetime | None
    open_findings: tuple[FindingFact, ...] = ()
    release: str | None = None  # the release judged for, if one was


@dataclass(frozen=True)
class _TierPlan:
    """What a policy decides for one tier, looked up once instead of per control and per
    evaluation: a write evaluates readiness every time, and these lookups (enum
    conversions, list scans) cost more than the rule's arithmetic."""

    rules: TierPolicy
    release_bound: frozenset[str]
    confirmation_for: frozenset[GateStage]
    weights: dict[str, float]
    required_for: dict[str, tuple[GateStage, ...]]
    non_waivable: frozenset[str]
    # Controls that may not count as not_applicable: forbidden, or not waivable either.
    not_applicable_refused: frozenset[str]
    fresh_for: timedelta | None


def _plan_tier(policy: PolicyRules, tier: Tier) -> _TierPlan:
    rules = policy.tier(tier)
    return _TierPlan(
        rules=rules,
        release_bound=frozenset(policy.release_bound),
        confirmation_for=frozenset(policy.classification_confirmed_for),
        weights={control: policy.weight(control) for control in CONTROL_KEYS},
        required_for={
            control: tuple(stage for stage in GateStage if control in rules.required_for(stage))
            for control in CONTROL_KEYS
        },
        non_waivable=frozenset(rules.non_waivable),
        not_applicable_refused=frozenset(rules.not_applicable_forbidden + rules.non_waivable),
        fresh_for=(
            timedelta(days=rules.evidence_fresh_days)
            if rules.evidence_fresh_days is not None
            else None
        ),
    )


# Plans by the id of the policy they were made from. Each entry holds its policy, so the id
# is not reused while it is cached; a process sees a handful of policies, and tests that make
# many only ever need the latest few. Rules are not changed once evaluated against.
_MAX_PLANNED_POLICIES = 16
_plans: dict[int, tuple[PolicyRules, dict[Tier, _TierPlan]]] = {}


def _tier_plan(policy: PolicyRules, tier: Tier) -> _TierPlan:
    entry = _plans.get(id(policy))
    if entry is None:
        if len(_plans) >= _MAX_PLANNED_POLICIES:
            _plans.clear()
        entry = _plans[id(policy)] = (policy, {})
    by_tier = entry[1]
    plan = by_tier.get(tier)
    if plan is None:
        plan = by_tier[tier] = _plan_tier(policy, tier)
    return plan


def round_score(value: float) -> float:
    return float(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


_JUST_AFTER = timedelta(microseconds=1)
_AS_CONTROL_STATUS = {status: ControlStatus(status.value) for status in EvidenceStatus}


def _evidence_status(
    fact: EvidenceFact | None, fresh_for: timedelta | None, now: datetime
) -> ControlStatus:
    if fact is None:
        return ControlStatus.missing
    if fact.expires_at is not None and fact.expires_at <= now:
        return ControlStatus.stale
    if fresh_for is not None and now - fact.recorded_at > fresh_for:
        return ControlStatus.stale
    return _AS_CONTROL_STATUS[fact.status]


def is_stale(fact: EvidenceFact, tier: Tier, policy: PolicyRules, now: datetime) -> bool:
    """Whether this version of evidence, on its own, counts as stale at `now` (expired, or
    older than the tier allows), whatever waivers the system holds."""
    return _evidence_status(fact, _tier_plan(policy, tier).fresh_for, now) is ControlStatus.stale


def counted_evidence(
    control: str, facts: ReadinessFacts, release_bound: frozenset[str]
) -> EvidenceFact | None:
    """The evidence a control counts: its current version, unless the control is bound to
    releases and that version names another release than the one judged; then its latest
    version naming that release or none (`facts.release_evidence`), if any."""
    fact = facts.evidence.get(control)
    if (
        fact is None
        or facts.release is None
        or fact.release is None
        or fact.release == facts.release
        or control not in release_bound
    ):
        return fact
    return facts.release_evidence.get(control)


def _counted(facts: ReadinessFacts, plan: _TierPlan) -> dict[str, EvidenceFact]:
    if facts.release is None:
        return facts.evidence
    counted = {}
    for control in facts.evidence:
        fact = counted_evidence(control, facts, plan.release_bound)
        if fact is not None:
            counted[control] = fact
    return counted


def _time_limits(
    facts: ReadinessFacts, evidence: Mapping[str, EvidenceFact], fresh_for: timedelta | None
) -> list[datetime]:
    limits = list(facts.waivers.values())
    for approvals in facts.approvals.values():
        limits.extend(approvals.expires_at)
    for fact in evidence.values():
        if fact.expires_at is not None:
            limits.append(fact.expires_at)
        if fresh_for is not None:
            # Stale is "older than" the limit, so the first stale instant is just after it.
            limits.append(fact.recorded_at + fresh_for + _JUST_AFTER)
    return [limit for limit in limits if limit > facts.now]


def control_status(control: str, facts: ReadinessFacts, policy: PolicyRules) -> ControlStatus:
    plan = _tier_plan(policy, facts.tier)
    return _control_status(control, facts, _counted(facts, plan), plan)


def _control_status(
    control: str, facts: ReadinessFacts, evidence: Mapping[str, EvidenceFact], plan: _TierPlan
) -> ControlStatus:
    if control in SYSTEM_FIELD_CONTROLS:
        raw = ControlStatus.met if facts.system_fields.get(control) else ControlStatus.missing
    else:
        raw = _evidence_status(evidence.get(control), plan.fresh_for, facts.now)
    # A control the policy will not let anyone waive cannot be set aside as not_applicable
    # either: otherwise a pipeline could do what an approver is refused.
    if raw is ControlStatus.not_applicable and control in plan.not_applicable_refused:
        raw = ControlStatus.not_met
    waiver_expiry = facts.waivers.get(control)
    waived = waiver_expiry is not None and waiver_expiry > facts.now
    # A waiver stands in for a missing or failing control; a met or not_applicable one
    # needs none (and a waiver must not pull a not_applicable control into the score).
    waivable = raw not in (ControlStatus.met, ControlStatus.not_applicable)
    if waived and waivable and control not in plan.non_waivable:
        return ControlStatus.waived
    return raw


_CONTROL_BLOCKING: dict[ControlStatus, tuple[BlockingCode, str]] = {
    ControlStatus.missing: (BlockingCode.control_missing, "no evidence recorded"),
    ControlStatus.not_met: (BlockingCode.control_not_met, "evidence says not met"),
    ControlStatus.partial: (BlockingCode.control_partial, "only partially met"),
    ControlStatus.stale: (BlockingCode.control_stale, "evidence is stale or expired"),
}


def _gate(
    stage: GateStage,
    score: float,
    statuses: dict[str, ControlStatus],
    facts: ReadinessFacts,
    plan: _TierPlan,
    of_other_releases: frozenset[str],
) -> GateResult:
    tier_policy = plan.rules
    rule = tier_policy.pilot if stage is GateStage.pilot else tier_policy.production
    blocking: list[BlockingItem] = []
    if score < rule.min_score:
        blocking.append(
            BlockingItem(
                BlockingCode.score_below_threshold,
                f"score {score} is below the {facts.tier.value}-tier {stage.value}"
                f" threshold {rule.min_score:g}",
            )
        )
    for control in rule.required:
        status = statuses[control]
        if status in _CONTROL_BLOCKING:
            code, why = _CONTROL_BLOCKING[status]
            if control in SYSTEM_FIELD_CONTROLS and status is ControlStatus.missing:
                why = f"system field '{control}' is empty"
            if status is ControlStatus.not_met and control in plan.not_applicable_refused:
                why = "evidence says not met, or not_applicable, which this tier refuses"
            if status is ControlStatus.missing and control in of_other_releases:
                code = BlockingCode.release_evidence_missing
                why = f"no evidence for release {facts.release}, only for other releases"
            blocking.append(
                BlockingItem(code, f"{control} is required for {stage.value}: {why}", control)
            )

    if stage is GateStage.production and tier_policy.pilot_before_production:
        accepted = [outcome.value for outcome in tier_policy.accepted_pilot_outcomes]
        if facts.pilot is None:
            blocking.append(
                BlockingItem(
                    BlockingCode.pilot_required,
                    f"a concluded pilot with outcome {' or '.join(accepted)} is required"
                    f" before production at {facts.tier.value} tier",
                )
            )
        elif facts.pilot.outcome not in accepted:
            blocking.append(
                BlockingItem(
                    BlockingCode.pilot_outcome_insufficient,
                    f"pilot {facts.pilot.pilot_id} concluded with outcome"
                    f" {facts.pilot.outcome}; {' or '.join(accepted)} is required",
                )
            )

    if stage in plan.confirmation_for and not facts.classification_confirmed:
        blocking.append(
            BlockingItem(
                BlockingCode.classification_unconfirmed,
                f"the {facts.tier.value} risk tier has not been confirmed by an approver since"
                " it was last set (POST .../classification)",
            )
        )
    approvals = facts.approvals.get(stage, ApprovalFacts())
    for approver in approvals.rejected_by:
        blocking.append(
            BlockingItem(
                BlockingCode.approval_rejected,
                f"{approver} rejected {stage.value}; it blocks until they approve",
            )
        )
    if approvals.approvers < rule.approvals:
        blocking.append(
            BlockingItem(
                BlockingCode.approvals_missing,
                f"{rule.approvals} approval(s) from distinct approvers needed for"
                f" {stage.value}, {approvals.approvers} valid",
            )
        )

    if stage is GateStage.production:
        for finding in facts.open_findings:
            blocking.append(
                BlockingItem(
                    BlockingCode.open_finding,
                    f"pilot {finding.pilot_id} found {finding.finding}; update {finding.control}"
                    " to clear it",
                    finding.control,
                )
            )
    return GateResult(stage, not blocking, rule.min_score, tuple(blocking))


def evaluate(facts: ReadinessFacts, policy: PolicyRules) -> Evaluation:
    plan = _tier_plan(policy, facts.tier)
    evidence = _counted(facts, plan)
    statuses: dict[str, ControlStatus] = {
        control: _control_status(control, facts, evidence, plan) for control in CONTROL_KEYS
    }
    # Controls with evidence, none of it counting for the release judged.
    of_other_releases = (
        frozenset(facts.evidence.keys() - evidence.keys())
        if evidence is not facts.evidence
        else frozenset()
    )

    earned = 0.0
    possible = 0.0
    controls: list[ControlResult] = []
    for control in CONTROL_KEYS:
        status = statuses[control]
        weight = plan.weights[control]
        points = POINTS.get(status)
        if points is not None:
            earned += weight * points
            possible += weight
        controls.append(ControlResult(control, status, points, weight, plan.required_for[control]))
    score = round_score(100 * earned / possible) if possible > 0 else 0.0

    gates = {
        stage: _gate(stage, score, statuses, facts, plan, of_other_releases) for stage in GateStage
    }

    def ready_apart_from_approvals(stage: GateStage) -> bool:
        return all(item.code in APPROVAL_CODES for item in gates[stage].blocking)

    if ready_apart_from_approvals(GateStage.production):
        level = Level.production_ready
    elif ready_apart_from_approvals(GateStage.pilot):
        level = Level.pilot_ready
    else:
        level = Level.not_ready

    limits = _time_limits(facts, evidence, plan.fresh_for)
    return Evaluation(
        tier=facts.tier,
        score=score,
        level=level,
        controls=tuple(controls),
        gates=gates,
        valid_until=min(limits) if limits else None,
        open_findings=facts.open_findings,
        release=facts.release,
    )
