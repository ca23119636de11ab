"""Risk tier derivation (docs/domain.md, "Risk tiers"): a pure, table-driven check of `derive_tier`.

The expected tiers are written out from DESIGN's table here, not read from the code's own
mapping, so a wrong entry in `IMPACT_TIERS` fails these tests.
"""

import itertools

import pytest

from app.readiness.tiers import Oversight, Tier, TierRule, derive_tier

# docs/domain.md, "Risk tiers": impact area -> tier.
AREA_TIER: dict[str, Tier] = {
    "drafting": Tier.minimal,
    "tasks": Tier.limited,
    "staff_work": Tier.limited,
    "operations": Tier.limited,
    "customer_service": Tier.limited,
    "records": Tier.limited,
    "decisions": Tier.limited,
    "money": Tier.high,
    "access": Tier.high,
    "regulated_records": Tier.high,
    "public_decisions": Tier.high,
    "safety": Tier.critical,
    "care": Tier.critical,
}
ORDER = [Tier.minimal, Tier.limited, Tier.high, Tier.critical]
# DESIGN: "a fully automated system of tier limited or above moves up one tier".
BUMPED = {
    Tier.minimal: Tier.minimal,
    Tier.limited: Tier.high,
    Tier.high: Tier.critical,
    Tier.critical: Tier.critical,
}
SUPERVISED = ["human_reviews_all", "human_reviews_sample"]
# One representative area per tier, for the declared-tier tables.
AREA_OF_TIER = {
    Tier.minimal: "drafting",
    Tier.limited: "tasks",
    Tier.high: "money",
    Tier.critical: "safety",
}


def highest(tiers: list[Tier]) -> Tier:
    return max(tiers, key=ORDER.index)


@pytest.mark.parametrize("oversight", SUPERVISED)
@pytest.mark.parametrize(("area", "tier"), sorted(AREA_TIER.items()))
def test_each_impact_area_sets_its_tier(area: str, tier: Tier, oversight: str) -> None:
    decision = derive_tier([area], oversight)
    assert decision.tier is tier
    assert decision.rule is TierRule.impact_area
    assert area in decision.detail


def test_the_table_covers_every_impact_area_the_code_knows() -> None:
    from app.readiness.tiers import ImpactArea

    assert {area.value for area in ImpactArea} == set(AREA_TIER)


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(sorted(AREA_TIER), 2)))
def test_the_highest_area_wins_for_every_pair(first: str, second: str) -> None:
    expected = highest([AREA_TIER[first], AREA_TIER[second]])
    for areas in ([first, second], [second, first]):
        decision = derive_tier(areas, Oversight.human_reviews_all)
        assert decision.tier is expected, areas
        assert decision.rule is TierRule.impact_area


@pytest.mark.parametrize(
    ("areas", "expected"),
    [
        (["drafting", "tasks", "money", "safety"], Tier.critical),
        (["safety", "drafting"], Tier.critical),
        (["care", "money", "records"], Tier.critical),
        (["drafting", "access", "operations"], Tier.high),
        (["regulated_records", "public_decisions"], Tier.high),
        (["drafting", "customer_service"], Tier.limited),
        (["decisions", "staff_work", "drafting"], Tier.limited),
        (["drafting"], Tier.minimal),
        (["drafting", "drafting"], Tier.minimal),
    ],
)
def test_the_highest_of_many_areas_wins(areas: list[str], expected: Tier) -> None:
    decision = derive_tier(areas, "human_reviews_sample")
    assert decision.tier is expected
    assert decision.rule is TierRule.impact_area


@pytest.mark.parametrize(("area", "tier"), sorted(AREA_TIER.items()))
def test_fully_automated_moves_limited_and_above_up_one_tier(area: str, tier: Tier) -> None:
    decision = derive_tier([area], Oversight.fully_automated)
    assert decision.tier is BUMPED[tier]
    if BUMPED[tier] is tier:
        # minimal stays minimal, critical stays critical: the bump did not set the tier.
        assert decision.rule is TierRule.impact_area
    else:
        assert decision.rule is TierRule.fully_automated


@pytest.mark.parametrize(
    ("area", "expected"),
    [
        ("drafting", Tier.minimal),
        ("operations", Tier.high),
        ("public_decisions", Tier.critical),
        ("care", Tier.critical),
    ],
)
def test_fully_automated_bump_table(area: str, expected: Tier) -> None:
    assert derive_tier([area], "fully_automated").tier is expected


def test_fully_automated_bumps_the_highest_area_once() -> None:
    # limited + high areas: the highest (high) is bumped to critical, not limited to high.
    decision = derive_tier(["tasks", "money"], "fully_automated")
    assert decision.tier is Tier.critical
    assert decision.rule is TierRule.fully_automated
    # two limited areas are bumped one tier only, not once per area.
    decision = derive_tier(["tasks", "records"], "fully_automated")
    assert decision.tier is Tier.high
    assert decision.rule is TierRule.fully_automated


@pytest.mark.parametrize("oversight", SUPERVISED)
@pytest.mark.parametrize("declared", ORDER)
@pytest.mark.parametrize("derived", ORDER)
def test_declared_tier_raises_but_never_lowers(
    derived: Tier, declared: Tier, oversight: str
) -> None:
    decision = derive_tier([AREA_OF_TIER[derived]], oversight, declared)
    assert decision.tier is highest([derived, declared])
    if ORDER.index(declared) > ORDER.index(derived):
        assert decision.rule is TierRule.declared_risk_tier
    else:
        assert decision.rule is TierRule.impact_area


@pytest.mark.parametrize("declared", ORDER)
@pytest.mark.parametrize("derived", ORDER)
def test_declared_tier_is_compared_with_the_bumped_tier(derived: Tier, declared: Tier) -> None:
    decision = derive_tier([AREA_OF_TIER[derived]], "fully_automated", declared.value)
    after_bump = BUMPED[derived]
    assert decision.tier is highest([after_bump, declared])
    if ORDER.index(declared) > ORDER.index(after_bump):
        assert decision.rule is TierRule.declared_risk_tier
    elif after_bump is not derived:
        assert decision.rule is TierRule.fully_automated
    else:
        assert decision.rule is TierRule.impact_area


def test_declared_none_changes_nothing() -> None:
    assert derive_tier(["money"], "human_reviews_all", None) == derive_tier(
        ["money"], "human_reviews_all"
    )


@pytest.mark.parametrize(
    ("areas", "oversight", "declared", "tier", "rule"),
    [
        (["drafting"], "human_reviews_all", None, Tier.minimal, TierRule.impact_area),
        (["drafting"], "fully_automated", None, Tier.minimal, TierRule.impact_area),
        (["drafting"], "fully_automated", "limited", Tier.limited, TierRule.declared_risk_tier),
        (["drafting"], "human_reviews_all", "critical", Tier.critical, TierRule.declared_risk_tier),
        (["records"], "fully_automated", None, Tier.high, TierRule.fully_automated),
        (["records"], "fully_automated", "high", Tier.high, TierRule.fully_automated),
        (["records"], "fully_automated", "critical", Tier.critical, TierRule.declared_risk_tier),
        (["records"], "fully_automated", "minimal", Tier.high, TierRule.fully_automated),
        (["money"], "fully_automated", None, Tier.critical, TierRule.fully_automated),
        (["money"], "human_reviews_sample", "limited", Tier.high, TierRule.impact_area),
        (["care"], "fully_automated", None, Tier.critical, TierRule.impact_area),
        (["care"], "human_reviews_all", "minimal", Tier.critical, TierRule.impact_area),
    ],
)
def test_the_decision_names_the_rule_that_set_the_final_tier(
    areas: list[str], oversight: str, declared: str | None, tier: Tier, rule: TierRule
) -> None:
    decision = derive_tier(areas, oversight, declared)
    assert (decision.tier, decision.rule) == (tier, rule)
    assert decision.detail  # the readiness answer shows why


def test_enum_and_string_inputs_agree() -> None:
    from app.readiness.tiers import ImpactArea

    assert derive_tier([ImpactArea.money], Oversight.fully_automated, Tier.high) == derive_tier(
        ["money"], "fully_automated", "high"
    )


@pytest.mark.parametrize(
    ("areas", "oversight", "declared"),
    [
        (["nuclear"], "human_reviews_all", None),
        (["money"], "nobody", None),
        (["money"], "human_reviews_all", "extreme"),
    ],
)
def test_unknown_values_are_rejected(
    areas: list[str], oversight: str, declared: str | None
) -> None:
    with pytest.raises(ValueError, match="is not a valid"):
        derive_tier(areas, oversight, declared)
