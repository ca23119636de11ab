"""Risk tier derivation: a pure function of the system's declared facts."""

from dataclasses import dataclass
from enum import StrEnum

# Defined in app.vocabulary, where the policy document can name tiers without depending on
# readiness; named here too, beside the rule that derives them.
from app.vocabulary import TIER_ORDER as TIER_ORDER
from app.vocabulary import Tier as Tier


class ImpactArea(StrEnum):
    drafting = "drafting"
    tasks = "tasks"
    staff_work = "staff_work"
    operations = "operations"
    customer_service = "customer_service"
    records = "records"
    decisions = "decisions"
    money = "money"
    access = "access"
    regulated_records = "regulated_records"
    public_decisions = "public_decisions"
    safety = "safety"
    care = "care"


class Oversight(StrEnum):
    human_reviews_all = "human_reviews_all"
    human_reviews_sample = "human_reviews_sample"
    fully_automated = "fully_automated"


IMPACT_TIERS: dict[ImpactArea, Tier] = {
    ImpactArea.drafting: Tier.minimal,
    ImpactArea.tasks: Tier.limited,
    ImpactArea.staff_work: Tier.limited,
    ImpactArea.operations: Tier.limited,
    ImpactArea.customer_service: Tier.limited,
    ImpactArea.records: Tier.limited,
    ImpactArea.decisions: Tier.limited,
    ImpactArea.money: Tier.high,
    ImpactArea.access: Tier.high,
    ImpactArea.regulated_records: Tier.high,
    ImpactArea.public_decisions: Tier.high,
    ImpactArea.safety: Tier.critical,
    ImpactArea.care: Tier.critical,
}


class TierRule(StrEnum):
    impact_area = "impact_area"
    fully_automated = "fully_automated"
    declared_risk_tier = "declared_risk_tier"


@dataclass(frozen=True)
class TierDecision:
    tier: Tier
    rule: TierRule
    detail: str


def derive_tier(
    impact_areas: list[ImpactArea] | list[str],
    oversight: Oversight | str,
    declared: Tier | str | None = None,
) -> TierDecision:
    """The highest tier among the impact areas, bumped for full automation, raised by a
    declaration. The decision names the rule that set the final tier."""
    areas = [ImpactArea(area) for area in impact_areas]
    if areas:
        deciding = max(areas, key=lambda area: (IMPACT_TIERS[area].rank, area.value))
        tier = IMPACT_TIERS[deciding]
        decision = TierDecision(
            tier, TierRule.impact_area, f"impact area '{deciding.value}' is {tier.value} tier"
        )
    else:
        decision = TierDecision(Tier.minimal, TierRule.impact_area, "no impact area declared")

    if (
        Oversight(oversight) is Oversight.fully_automated
        and Tier.limited.rank <= (decision.tier.rank) < Tier.critical.rank
    ):
        bumped = TIER_ORDER[decision.tier.rank + 1]
        decision = TierDecision(
            bumped,
            TierRule.fully_automated,
            f"fully automated {decision.tier.value}-tier system moves up to {bumped.value}"
            f" ({decision.detail})",
        )

    if declared is not None and Tier(declared).rank > decision.tier.rank:
        decision = TierDecision(
            Tier(declared),
            TierRule.declared_risk_tier,
            f"declared risk tier {Tier(declared).value} is above the derived {decision.tier.value}",
        )
    return decision
