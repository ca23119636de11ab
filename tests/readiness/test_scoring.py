"""The scoring rule and the gates (docs/domain.md, "Scoring rule" and the default policy).

Every expectation here is written out from docs/domain.md, not read back from the policy file or
the scoring module, so a drift in either one fails a test. `evaluate` is pure: facts are built
directly with fixed, timezone-aware UTC datetimes.
"""

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.lifecycle.stages import GateStage
from app.policies.document import PolicyRules
from app.policies.service import default_policy_document
from app.readiness.scoring import (
    ApprovalFacts,
    ControlStatus,
    Evaluation,
    EvidenceFact,
    EvidenceStatus,
    FindingFact,
    GateResult,
    Level,
    PilotFact,
    ReadinessFacts,
    evaluate,
)
from app.readiness.tiers import Tier

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RECENT = NOW - timedelta(days=1)
LONG_AGO = NOW - timedelta(days=3650)
WAIVER_EXPIRY = NOW + timedelta(days=30)

PILOT = GateStage.pilot
PRODUCTION = GateStage.production
TIERS = [Tier.minimal, Tier.limited, Tier.high, Tier.critical]
STAGES = [PILOT, PRODUCTION]

# ---- docs/domain.md, "Controls" and the default policy, written out --------------------------

ALL_CONTROLS: tuple[str, ...] = (
    "purpose",
    "owner",
    "scope",
    "data_rules",
    "data_quality",
    "access_boundaries",
    "risk_review",
    "testing_evidence",
    "measurable_value",
    "monitoring",
    "support_plan",
    "fallback_process",
    "human_oversight",
    "approval_path",
    "training",
    "workflow",
    "rollout_plan",
)
SYSTEM_FIELDS = frozenset({"purpose", "owner", "scope"})
EVIDENCE_CONTROLS = tuple(c for c in ALL_CONTROLS if c not in SYSTEM_FIELDS)

# "+" is cumulative: a tier needs what the tier below needs for the same gate, and production
# needs everything the pilot gate of the same tier needs.
MINIMAL_PILOT = frozenset({"purpose", "owner", "scope"})
MINIMAL_PRODUCTION = MINIMAL_PILOT | {"data_rules", "access_boundaries", "support_plan"}
LIMITED_PILOT = MINIMAL_PILOT | {"data_rules", "access_boundaries"}
LIMITED_PRODUCTION = (
    LIMITED_PILOT
    | MINIMAL_PRODUCTION
    | {
        "testing_evidence",
        "monitoring",
        "fallback_process",
        "human_oversight",
        "training",
        "workflow",
        "support_plan",
    }
)
HIGH_PILOT = LIMITED_PILOT | {"risk_review", "human_oversight"}
CRITICAL_PILOT = HIGH_PILOT | {"fallback_process", "approval_path"}
EVERYTHING = frozenset(ALL_CONTROLS)

REQUIRED: dict[tuple[Tier, GateStage], frozenset[str]] = {
    (Tier.minimal, PILOT): MINIMAL_PILOT,
    (Tier.minimal, PRODUCTION): MINIMAL_PRODUCTION,
    (Tier.limited, PILOT): LIMITED_PILOT,
    (Tier.limited, PRODUCTION): LIMITED_PRODUCTION,
    (Tier.high, PILOT): HIGH_PILOT,
    (Tier.high, PRODUCTION): EVERYTHING,
    (Tier.critical, PILOT): CRITICAL_PILOT,
    (Tier.critical, PRODUCTION): EVERYTHING,
}
MIN_SCORE: dict[tuple[Tier, GateStage], float] = {
    (Tier.minimal, PILOT): 0,
    (Tier.minimal, PRODUCTION): 50,
    (Tier.limited, PILOT): 30,
    (Tier.limited, PRODUCTION): 70,
    (Tier.high, PILOT): 50,
    (Tier.high, PRODUCTION): 85,
    (Tier.critical, PILOT): 60,
    (Tier.critical, PRODUCTION): 95,
}
APPROVALS: dict[tuple[Tier, GateStage], int] = {
    (Tier.minimal, PILOT): 0,
    (Tier.minimal, PRODUCTION): 0,
    (Tier.limited, PILOT): 0,
    (Tier.limited, PRODUCTION): 0,
    (Tier.high, PILOT): 0,
    (Tier.high, PRODUCTION): 1,
    (Tier.critical, PILOT): 1,
    (Tier.critical, PRODUCTION): 2,
}
FRESH_DAYS: dict[Tier, int | None] = {
    Tier.minimal: None,
    Tier.limited: 365,
    Tier.high: 180,
    Tier.critical: 90,
}
PILOT_BEFORE_PRODUCTION = {
    Tier.minimal: False,
    Tier.limited: False,
    Tier.high: True,
    Tier.critical: True,
}
ACCEPTED_OUTCOMES: dict[Tier, frozenset[str]] = {
    Tier.minimal: frozenset(),
    Tier.limited: frozenset(),
    Tier.high: frozenset({"pass", "warning"}),
    Tier.critical: frozenset({"pass"}),
}
NON_WAIVABLE: dict[Tier, frozenset[str]] = {
    Tier.minimal: frozenset(),
    Tier.limited: frozenset(),
    Tier.high: frozenset({"human_oversight"}),
    Tier.critical: frozenset({"human_oversight", "fallback_process"}),
}

BAD_CODE = {
    "missing": "control_missing",
    "not_met": "control_not_met",
    "partial": "control_partial",
    "stale_expired": "control_stale",
    "stale_age": "control_stale",
}
BAD_STATUS = {
    "missing": ControlStatus.missing,
    "not_met": ControlStatus.not_met,
    "partial": ControlStatus.partial,
    "stale_expired": ControlStatus.stale,
    "stale_age": ControlStatus.stale,
}

DEFAULT_POLICY = PolicyRules.model_validate(default_policy_document())


# ---- helpers ---------------------------------------------------------------------------------


def policy_with(**changes: Any) -> PolicyRules:
    """The default policy with some top-level fields replaced, validated like a published one."""
    return PolicyRules.model_validate({**default_policy_document(), **changes})


def ready_facts(tier: Tier) -> ReadinessFacts:
    """Everything in place: every control met and fresh, a passed pilot, plenty of approvals."""
    return ReadinessFacts(
        tier=tier,
        system_fields=dict.fromkeys(SYSTEM_FIELDS, True),
        evidence={c: EvidenceFact(EvidenceStatus.met, RECENT) for c in EVIDENCE_CONTROLS},
        now=NOW,
        pilot=PilotFact(pilot_id=7, outcome="pass"),
        approvals={stage: ApprovalFacts(approvers=3) for stage in STAGES},
    )


def with_control(facts: ReadinessFacts, control: str, state: str) -> ReadinessFacts:
    """Put one control in a state: met, missing, not_met, partial, not_applicable,
    stale_expired (expires_at reached) or stale_age (older than the tier's freshness)."""
    if control in SYSTEM_FIELDS:
        assert state in {"met", "missing"}, f"{control} is a system field"
        return dataclasses.replace(
            facts, system_fields={**facts.system_fields, control: state == "met"}
        )
    evidence = dict(facts.evidence)
    if state == "missing":
        evidence.pop(control, None)
    elif state == "stale_expired":
        evidence[control] = EvidenceFact(EvidenceStatus.met, RECENT, expires_at=facts.now)
    elif state == "stale_age":
        days = FRESH_DAYS[facts.tier]
        assert days is not None
        evidence[control] = EvidenceFact(EvidenceStatus.met, facts.now - timedelta(days=days + 1))
    else:
        evidence[control] = EvidenceFact(EvidenceStatus(state), RECENT)
    return dataclasses.replace(facts, evidence=evidence)


def with_controls(facts: ReadinessFacts, **states: str) -> ReadinessFacts:
    for control, state in states.items():
        facts = with_control(facts, control, state)
    return facts


def items(gate: GateResult) -> list[tuple[str, str | None]]:
    return [(item.code.value, item.control) for item in gate.blocking]


def codes(gate: GateResult) -> set[str]:
    return {item.code.value for item in gate.blocking}


def control_items(gate: GateResult) -> list[tuple[str, str | None]]:
    return [(item.code.value, item.control) for item in gate.blocking if item.control]


def status_of(evaluation: Evaluation, control: str) -> ControlStatus:
    (result,) = [r for r in evaluation.controls if r.control == control]
    return result.status


def bad_states(tier: Tier, control: str) -> list[str]:
    if control in SYSTEM_FIELDS:
        return ["missing"]
    states = ["missing", "not_met", "partial", "stale_expired"]
    if FRESH_DAYS[tier] is not None:
        states.append("stale_age")
    return states


# ---- the default policy carries DESIGN's numbers ---------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_default_policy_matches_design_table(tier: Tier) -> None:
    rules = DEFAULT_POLICY.tier(tier)
    assert rules.pilot.min_score == MIN_SCORE[tier, PILOT]
    assert rules.production.min_score == MIN_SCORE[tier, PRODUCTION]
    assert rules.pilot.approvals == APPROVALS[tier, PILOT]
    assert rules.production.approvals == APPROVALS[tier, PRODUCTION]
    assert rules.evidence_fresh_days == FRESH_DAYS[tier]
    assert rules.pilot_before_production is PILOT_BEFORE_PRODUCTION[tier]
    assert {o.value for o in rules.accepted_pilot_outcomes} == ACCEPTED_OUTCOMES[tier]
    assert set(rules.non_waivable) == NON_WAIVABLE[tier]
    assert set(rules.pilot.required) == REQUIRED[tier, PILOT]
    assert set(rules.production.required) == REQUIRED[tier, PRODUCTION]


def test_default_policy_is_cumulative_and_weighs_every_control_one() -> None:
    for lower, upper in itertools.pairwise(TIERS):
        for stage in STAGES:
            assert REQUIRED[lower, stage] <= REQUIRED[upper, stage]
    for tier in TIERS:
        assert REQUIRED[tier, PILOT] <= REQUIRED[tier, PRODUCTION]
    assert len(EVERYTHING) == 17
    assert all(DEFAULT_POLICY.weight(c) == 1.0 for c in ALL_CONTROLS)
    assert DEFAULT_POLICY.approval_validity_days == 30
    assert DEFAULT_POLICY.max_waiver_days == 90


@pytest.mark.parametrize("tier", TIERS)
def test_each_control_reports_the_gates_that_require_it(tier: Tier) -> None:
    evaluation = evaluate(ready_facts(tier), DEFAULT_POLICY)
    assert [r.control for r in evaluation.controls] == list(ALL_CONTROLS)
    for result in evaluation.controls:
        expected = tuple(s for s in STAGES if result.control in REQUIRED[tier, s])
        assert result.required_for == expected, result.control


@pytest.mark.parametrize("tier", TIERS)
def test_everything_in_place_is_production_ready(tier: Tier) -> None:
    evaluation = evaluate(ready_facts(tier), DEFAULT_POLICY)
    assert evaluation.tier is tier
    assert evaluation.score == 100.0
    assert evaluation.level is Level.production_ready
    for stage in STAGES:
        gate = evaluation.gates[stage]
        assert gate.stage is stage
        assert gate.ready, items(gate)
        assert gate.blocking == ()
        assert gate.required_score == MIN_SCORE[tier, stage]


# ---- thresholds --------------------------------------------------------------------------------


def scored_facts(tier: Tier, score: float) -> tuple[ReadinessFacts, PolicyRules]:
    """Everything met except rollout_plan (missing); weights make the score exactly `score`."""
    weights = dict.fromkeys(ALL_CONTROLS, 0.0)
    weights["data_quality"] = score  # met
    weights["rollout_plan"] = round(100 - score, 1)  # missing
    facts = with_control(ready_facts(tier), "rollout_plan", "missing")
    return facts, policy_with(weights=weights)


@pytest.mark.parametrize(("tier", "stage"), list(MIN_SCORE))
def test_score_exactly_at_the_threshold_passes(tier: Tier, stage: GateStage) -> None:
    threshold = MIN_SCORE[tier, stage]
    facts, policy = scored_facts(tier, threshold)
    evaluation = evaluate(facts, policy)
    assert evaluation.score == threshold
    gate = evaluation.gates[stage]
    assert gate.required_score == threshold
    assert "score_below_threshold" not in codes(gate)
    if "rollout_plan" in REQUIRED[tier, stage]:
        # high/critical production require all 17 controls, so the score can only fall
        # short of 100 with something required missing: only the missing control blocks.
        assert items(gate) == [("control_missing", "rollout_plan")]
    else:
        assert gate.ready, items(gate)


@pytest.mark.parametrize(
    ("tier", "stage"), [key for key, threshold in MIN_SCORE.items() if threshold > 0]
)
def test_score_a_tenth_below_the_threshold_fails(tier: Tier, stage: GateStage) -> None:
    threshold = MIN_SCORE[tier, stage]
    facts, policy = scored_facts(tier, threshold - 0.1)
    evaluation = evaluate(facts, policy)
    assert evaluation.score == pytest.approx(threshold - 0.1, abs=1e-9)
    gate = evaluation.gates[stage]
    assert not gate.ready
    assert ("score_below_threshold", None) in items(gate)
    below = [item for item in gate.blocking if item.code.value == "score_below_threshold"]
    assert len(below) == 1
    assert below[0].detail
    if "rollout_plan" not in REQUIRED[tier, stage]:
        assert items(gate) == [("score_below_threshold", None)]


def test_minimal_pilot_threshold_zero_passes_with_score_zero() -> None:
    facts, policy = scored_facts(Tier.minimal, 0.0)
    evaluation = evaluate(facts, policy)
    assert evaluation.score == 0.0
    assert evaluation.gates[PILOT].ready
    assert "score_below_threshold" in codes(evaluation.gates[PRODUCTION])
    assert evaluation.level is Level.pilot_ready


# ---- required controls -------------------------------------------------------------------------

REQUIRED_CASES = [
    pytest.param(tier, stage, control, state, id=f"{tier}-{stage}-{control}-{state}")
    for (tier, stage), required in REQUIRED.items()
    for control in sorted(required)
    for state in bad_states(tier, control)
]


@pytest.mark.parametrize(("tier", "stage", "control", "state"), REQUIRED_CASES)
def test_a_required_control_not_met_blocks_its_gate(
    tier: Tier, stage: GateStage, control: str, state: str
) -> None:
    evaluation = evaluate(with_control(ready_facts(tier), control, state), DEFAULT_POLICY)
    assert status_of(evaluation, control) is BAD_STATUS[state]
    gate = evaluation.gates[stage]
    assert not gate.ready
    assert control_items(gate) == [(BAD_CODE[state], control)]
    other = PRODUCTION if stage is PILOT else PILOT
    if control not in REQUIRED[tier, other]:
        # Only required controls block: the other gate does not mention this control.
        assert control_items(evaluation.gates[other]) == []
        assert evaluation.gates[other].ready


NOT_REQUIRED_CASES = [
    pytest.param(tier, stage, control, id=f"{tier}-{stage}-{control}")
    for (tier, stage), required in REQUIRED.items()
    for control in ALL_CONTROLS
    if control not in required
]


@pytest.mark.parametrize(("tier", "stage", "control"), NOT_REQUIRED_CASES)
def test_a_control_not_required_for_a_gate_does_not_block_it(
    tier: Tier, stage: GateStage, control: str
) -> None:
    evaluation = evaluate(with_control(ready_facts(tier), control, "missing"), DEFAULT_POLICY)
    assert status_of(evaluation, control) is ControlStatus.missing
    assert evaluation.score == 94.1  # 16 of 17
    gate = evaluation.gates[stage]
    assert gate.ready, items(gate)


@pytest.mark.parametrize("tier", TIERS)
def test_a_system_field_missing_is_control_missing(tier: Tier) -> None:
    facts = with_controls(ready_facts(tier), purpose="missing", owner="missing", scope="missing")
    evaluation = evaluate(facts, DEFAULT_POLICY)
    for stage in STAGES:
        assert sorted(control_items(evaluation.gates[stage])) == [
            ("control_missing", "owner"),
            ("control_missing", "purpose"),
            ("control_missing", "scope"),
        ]
    assert evaluation.level is Level.not_ready


def test_every_failing_required_control_is_reported() -> None:
    facts = with_controls(
        ready_facts(Tier.limited),
        data_rules="partial",
        access_boundaries="not_met",
        monitoring="stale_expired",
        training="missing",
    )
    evaluation = evaluate(facts, DEFAULT_POLICY)
    assert sorted(control_items(evaluation.gates[PILOT])) == [
        ("control_not_met", "access_boundaries"),
        ("control_partial", "data_rules"),
    ]
    assert sorted(control_items(evaluation.gates[PRODUCTION])) == [
        ("control_missing", "training"),
        ("control_not_met", "access_boundaries"),
        ("control_partial", "data_rules"),
        ("control_stale", "monitoring"),
    ]
    assert evaluation.level is Level.not_ready


# ---- staleness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", [t for t in TIERS if FRESH_DAYS[t] is not None])
def test_evidence_is_stale_only_once_older_than_the_freshness_limit(tier: Tier) -> None:
    days = FRESH_DAYS[tier]
    assert days is not None
    facts = ready_facts(tier)
    at_limit = NOW - timedelta(days=days)
    just_over = at_limit - timedelta(microseconds=1)
    for recorded, expected in [
        (at_limit + timedelta(seconds=1), ControlStatus.met),
        (at_limit, ControlStatus.met),
        (just_over, ControlStatus.stale),
        (NOW - timedelta(days=days + 30), ControlStatus.stale),
    ]:
        evidence = {**facts.evidence, "data_rules": EvidenceFact(EvidenceStatus.met, recorded)}
        evaluation = evaluate(dataclasses.replace(facts, evidence=evidence), DEFAULT_POLICY)
        assert status_of(evaluation, "data_rules") is expected, recorded
        # data_rules is required for every tier's production gate.
        assert evaluation.gates[PRODUCTION].ready is (expected is ControlStatus.met)


def test_minimal_tier_evidence_never_goes_stale_by_age() -> None:
    facts = ready_facts(Tier.minimal)
    evidence = {c: EvidenceFact(EvidenceStatus.met, LONG_AGO) for c in EVIDENCE_CONTROLS}
    evaluation = evaluate(dataclasses.replace(facts, evidence=evidence), DEFAULT_POLICY)
    assert all(r.status is ControlStatus.met for r in evaluation.controls)
    assert evaluation.score == 100.0
    assert evaluation.level is Level.production_ready
    assert evaluation.valid_until is None


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        (NOW - timedelta(days=1), ControlStatus.stale),
        (NOW, ControlStatus.stale),
        (NOW + timedelta(seconds=1), ControlStatus.met),
    ],
)
def test_evidence_is_stale_once_its_expiry_is_reached(
    tier: Tier, expires_at: datetime, expected: ControlStatus
) -> None:
    facts = ready_facts(tier)
    evidence = {
        **facts.evidence,
        "support_plan": EvidenceFact(EvidenceStatus.met, RECENT, expires_at=expires_at),
    }
    evaluation = evaluate(dataclasses.replace(facts, evidence=evidence), DEFAULT_POLICY)
    assert status_of(evaluation, "support_plan") is expected
    # stale counts as missing: 0 points, still in the denominator.
    assert evaluation.score == (100.0 if expected is ControlStatus.met else 94.1)


@pytest.mark.parametrize("evidence_status", ["met", "partial", "not_met", "not_applicable"])
def test_stale_counts_as_missing_whatever_the_evidence_said(evidence_status: str) -> None:
    facts = ready_facts(Tier.high)
    evidence = {
        **facts.evidence,
        "monitoring": EvidenceFact(EvidenceStatus(evidence_status), NOW - timedelta(days=181)),
    }
    evaluation = evaluate(dataclasses.replace(facts, evidence=evidence), DEFAULT_POLICY)
    result = next(r for r in evaluation.controls if r.control == "monitoring")
    assert result.status is ControlStatus.stale
    assert result.points == 0.0
    assert evaluation.score == 94.1
    assert control_items(evaluation.gates[PRODUCTION]) == [("control_stale", "monitoring")]


# ---- waivers -----------------------------------------------------------------------------------

WAIVER_CASES = [
    pytest.param(tier, control, state, id=f"{tier}-{control}-{state}")
    for tier in TIERS
    for control in ALL_CONTROLS
    for state in bad_states(tier, control)
    if control not in NON_WAIVABLE[tier]
]


@pytest.mark.parametrize(("tier", "control", "state"), WAIVER_CASES)
def test_waived_counts_as_met_for_gates_and_shows_as_waived(
    tier: Tier, control: str, state: str
) -> None:
    facts = with_control(ready_facts(tier), control, state)
    facts = dataclasses.replace(facts, waivers={control: WAIVER_EXPIRY})
    evaluation = evaluate(facts, DEFAULT_POLICY)
    result = next(r for r in evaluation.controls if r.control == control)
    assert result.status is ControlStatus.waived  # never shown as met
    assert result.points == 1.0
    assert evaluation.score == 100.0
    for stage in STAGES:
        assert evaluation.gates[stage].ready, items(evaluation.gates[stage])
    assert evaluation.level is Level.production_ready


NON_WAIVABLE_CASES = [
    pytest.param(tier, control, state, id=f"{tier}-{control}-{state}")
    for tier in TIERS
    for control in sorted(NON_WAIVABLE[tier])
    for state in bad_states(tier, control)
]


@pytest.mark.parametrize(("tier", "control", "state"), NON_WAIVABLE_CASES)
def test_a_non_waivable_control_ignores_its_waiver(tier: Tier, control: str, state: str) -> None:
    facts = with_control(ready_facts(tier), control, state)
    facts = dataclasses.replace(facts, waivers={control: WAIVER_EXPIRY})
    evaluation = evaluate(facts, DEFAULT_POLICY)
    assert status_of(evaluation, control) is BAD_STATUS[state]
    for stage in STAGES:
        if control in REQUIRED[tier, stage]:
            gate = evaluation.gates[stage]
            assert not gate.ready
            assert (BAD_CODE[state], control) in control_items(gate)


@pytest.mark.parametrize("tier", TIERS)
def test_an_expired_waiver_no_longer_counts(tier: Tier) -> None:
    facts = with_control(ready_facts(tier), "purpose", "missing")
    facts = dataclasses.replace(facts, waivers={"purpose": NOW - timedelta(seconds=1)})
    evaluation = evaluate(facts, DEFAULT_POLICY)
    assert status_of(evaluation, "purpose") is ControlStatus.missing
    assert ("control_missing", "purpose") in control_items(evaluation.gates[PILOT])
    assert evaluation.level is Level.not_ready


def test_a_waiver_does_not_pull_a_not_applicable_control_into_the_score() -> None:
    facts = with_controls(
        ready_facts(Tier.limited), monitoring="not_applicable", training="missing"
    )
    without = evaluate(facts, DEFAULT_POLICY)
    waived = evaluate(
        dataclasses.replace(facts, waivers={"monitoring": WAIVER_EXPIRY}), DEFAULT_POLICY
    )
    assert status_of(waived, "monitoring") is ControlStatus.not_applicable
    assert waived.score == without.score == 93.8  # 15 of 16 applicable controls


# ---- not_applicable, weights, rounding ---------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_not_applicable_is_left_out_of_the_denominator(tier: Tier) -> None:
    facts = with_control(ready_facts(tier), "rollout_plan", "not_applicable")
    evaluation = evaluate(facts, DEFAULT_POLICY)
    result = next(r for r in evaluation.controls if r.control == "rollout_plan")
    assert result.status is ControlStatus.not_applicable
    assert result.points is None
    assert evaluation.score == 100.0

    # 15 met, 1 missing, 1 not applicable: 15/16 (93.75), not 15/17 (88.2) nor 16/17 (94.1).
    facts = with_controls(facts, data_quality="missing")
    assert evaluate(facts, DEFAULT_POLICY).score == 93.8


def test_not_applicable_on_a_control_that_is_not_required_does_not_block() -> None:
    facts = with_controls(ready_facts(Tier.limited), rollout_plan="not_applicable")
    evaluation = evaluate(facts, DEFAULT_POLICY)
    assert evaluation.level is Level.production_ready
    assert all(evaluation.gates[stage].ready for stage in STAGES)


def test_a_policy_can_forbid_not_applicable_for_a_control() -> None:
    tiers = default_policy_document()["tiers"]
    tiers["limited"]["not_applicable_forbidden"] = ["data_rules"]
    policy = policy_with(tiers=tiers)
    facts = with_control(ready_facts(Tier.limited), "data_rules", "not_applicable")
    evaluation = evaluate(facts, policy)
    assert status_of(evaluation, "data_rules") is ControlStatus.not_met
    assert evaluation.score == 94.1
    assert control_items(evaluation.gates[PILOT]) == [("control_not_met", "data_rules")]
    # The same facts under the default policy: not applicable is accepted even for a required
    # control. DESIGN's gate rule says "met or waived"; this reads "the policy may forbid
    # not_applicable for a control" as "otherwise it satisfies the requirement".
    assert evaluate(facts, DEFAULT_POLICY).gates[PILOT].ready


@pytest.mark.parametrize(
    ("weights", "states", "score"),
    [
        ({}, {"rollout_plan": "missing"}, 94.1),  # 16/17
        ({"rollout_plan": 3}, {"rollout_plan": "missing"}, 84.2),  # 16/19
        ({"rollout_plan": 0}, {"rollout_plan": "missing"}, 100.0),  # 16/16
        ({"rollout_plan": 3}, {"rollout_plan": "partial"}, 92.1),  # 17.5/19
        ({"purpose": 10}, {"purpose": "missing"}, 61.5),  # 16/26
        ({"purpose": 10}, {"owner": "missing"}, 96.2),  # 25/26
        ({"rollout_plan": 2.5, "training": 0.5}, {"rollout_plan": "missing"}, 86.1),  # 15.5/18
        ({"monitoring": 4}, {"monitoring": "not_applicable", "training": "missing"}, 93.8),
    ],
)
def test_policy_weights_change_the_score(
    weights: dict[str, float], states: dict[str, str], score: float
) -> None:
    policy = policy_with(weights=weights)
    evaluation = evaluate(with_controls(ready_facts(Tier.limited), **states), policy)
    assert evaluation.score == score
    for result in evaluation.controls:
        assert result.weight == weights.get(result.control, 1.0)


ONLY_SYSTEM_FIELDS_WEIGH = {c: (1.0 if c in SYSTEM_FIELDS else 0.0) for c in ALL_CONTROLS}
# monitoring not applicable: 16 controls count, so k/16 gives exact ties like 81.25 and 6.25
SIXTEEN = {"monitoring": "not_applicable"}
THREE_MISSING = {"data_rules": "missing", "data_quality": "missing", "risk_review": "missing"}
ALL_BUT_PURPOSE_MISSING = {
    **dict.fromkeys([c for c in ALL_CONTROLS if c not in {"purpose", "monitoring"}], "missing"),
    **SIXTEEN,
}


@pytest.mark.parametrize(
    ("weights", "states", "score"),
    [
        pytest.param({}, {"rollout_plan": "partial"}, 97.1, id="16.5/17=97.06"),
        pytest.param({}, {"rollout_plan": "not_met"}, 94.1, id="16/17=94.12"),
        pytest.param(ONLY_SYSTEM_FIELDS_WEIGH, {"owner": "missing"}, 66.7, id="2/3=66.67"),
        pytest.param(
            ONLY_SYSTEM_FIELDS_WEIGH,
            {"owner": "missing", "scope": "missing"},
            33.3,
            id="1/3=33.33",
        ),
        # exact ties round half up (Python's round() would give 81.2 and 6.2)
        pytest.param({}, {**SIXTEEN, **THREE_MISSING}, 81.3, id="13/16=81.25"),
        pytest.param({}, ALL_BUT_PURPOSE_MISSING, 6.3, id="1/16=6.25"),
        pytest.param(
            {}, {**SIXTEEN, **THREE_MISSING, "training": "partial"}, 78.1, id="12.5/16=78.125"
        ),
    ],
)
def test_score_is_rounded_to_one_decimal(
    weights: dict[str, float], states: dict[str, str], score: float
) -> None:
    facts = with_controls(ready_facts(Tier.limited), **states)
    evaluation = evaluate(facts, policy_with(weights=weights))
    assert evaluation.score == score


# ---- pilot rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "outcome", "code"),
    [
        (Tier.minimal, None, None),
        (Tier.minimal, "fail", None),
        (Tier.limited, None, None),
        (Tier.limited, "fail", None),
        (Tier.high, None, "pilot_required"),
        (Tier.high, "pass", None),
        (Tier.high, "warning", None),
        (Tier.high, "fail", "pilot_outcome_insufficient"),
        (Tier.critical, None, "pilot_required"),
        (Tier.critical, "pass", None),
        (Tier.critical, "warning", "pilot_outcome_insufficient"),
        (Tier.critical, "fail", "pilot_outcome_insufficient"),
    ],
)
def test_pilot_rule_for_production(tier: Tier, outcome: str | None, code: str | None) -> None:
    pilot = None if outcome is None else PilotFact(pilot_id=3, outcome=outcome)
    evaluation = evaluate(dataclasses.replace(ready_facts(tier), pilot=pilot), DEFAULT_POLICY)
    assert evaluation.gates[PILOT].ready  # the pilot rule is a production rule
    production = evaluation.gates[PRODUCTION]
    if code is None:
        assert production.ready, items(production)
        assert evaluation.level is Level.production_ready
    else:
        assert items(production) == [(code, None)]
        assert not production.ready
        assert evaluation.level is Level.pilot_ready


# ---- approvals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("approvers", [0, 1, 2, 3])
@pytest.mark.parametrize(("tier", "stage"), list(APPROVALS))
def test_approvals_missing_per_policy_count(tier: Tier, stage: GateStage, approvers: int) -> None:
    facts = ready_facts(tier)
    approvals = {**facts.approvals, stage: ApprovalFacts(approvers=approvers)}
    evaluation = evaluate(dataclasses.replace(facts, approvals=approvals), DEFAULT_POLICY)
    gate = evaluation.gates[stage]
    if approvers < APPROVALS[tier, stage]:
        assert items(gate) == [("approvals_missing", None)]
        assert not gate.ready
    else:
        assert gate.ready, items(gate)
    # approvals never change the level
    assert evaluation.level is Level.production_ready


@pytest.mark.parametrize("tier", TIERS)
def test_no_approval_facts_at_all_means_zero_approvals(tier: Tier) -> None:
    evaluation = evaluate(dataclasses.replace(ready_facts(tier), approvals={}), DEFAULT_POLICY)
    for stage in STAGES:
        needs = APPROVALS[tier, stage]
        assert evaluation.gates[stage].ready is (needs == 0)
        assert ("approvals_missing" in codes(evaluation.gates[stage])) is (needs > 0)
    assert evaluation.level is Level.production_ready


@pytest.mark.parametrize(("tier", "stage"), list(APPROVALS))
def test_a_rejection_blocks_its_gate(tier: Tier, stage: GateStage) -> None:
    facts = ready_facts(tier)
    approvals = {
        **facts.approvals,
        stage: ApprovalFacts(approvers=3, rejected_by=("risk-officer",)),
    }
    evaluation = evaluate(dataclasses.replace(facts, approvals=approvals), DEFAULT_POLICY)
    gate = evaluation.gates[stage]
    assert not gate.ready
    assert items(gate) == [("approval_rejected", None)]
    assert "risk-officer" in gate.blocking[0].detail
    other = PRODUCTION if stage is PILOT else PILOT
    assert evaluation.gates[other].ready
    assert evaluation.level is Level.production_ready


def test_each_rejection_is_reported() -> None:
    facts = ready_facts(Tier.critical)
    approvals = {
        PILOT: ApprovalFacts(approvers=1),
        PRODUCTION: ApprovalFacts(approvers=1, rejected_by=("ann", "bob")),
    }
    evaluation = evaluate(dataclasses.replace(facts, approvals=approvals), DEFAULT_POLICY)
    assert sorted(codes(evaluation.gates[PRODUCTION])) == ["approval_rejected", "approvals_missing"]
    assert [i.code.value for i in evaluation.gates[PRODUCTION].blocking].count(
        "approval_rejected"
    ) == 2
    assert evaluation.gates[PILOT].ready


# ---- open findings -----------------------------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_an_open_finding_blocks_production_only(tier: Tier) -> None:
    finding = FindingFact(control="data_quality", pilot_id=3, finding="poor_data")
    facts = dataclasses.replace(ready_facts(tier), open_findings=(finding,))
    evaluation = evaluate(facts, DEFAULT_POLICY)
    assert evaluation.gates[PILOT].ready
    assert items(evaluation.gates[PRODUCTION]) == [("open_finding", "data_quality")]
    assert not evaluation.gates[PRODUCTION].ready
    assert evaluation.level is Level.pilot_ready


# ---- level -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "states", "changes", "level"),
    [
        (Tier.minimal, {}, {}, Level.production_ready),
        (Tier.minimal, {"support_plan": "partial"}, {}, Level.pilot_ready),
        (Tier.minimal, {"scope": "missing"}, {}, Level.not_ready),
        (Tier.limited, {"monitoring": "missing"}, {}, Level.pilot_ready),
        (Tier.limited, {"access_boundaries": "stale_age"}, {}, Level.not_ready),
        (Tier.high, {"rollout_plan": "not_met"}, {}, Level.pilot_ready),
        (Tier.high, {"risk_review": "partial"}, {}, Level.not_ready),
        (Tier.high, {}, {"pilot": None}, Level.pilot_ready),
        (Tier.critical, {}, {"approvals": {}}, Level.production_ready),
        (Tier.critical, {"monitoring": "missing"}, {"approvals": {}}, Level.pilot_ready),
        (Tier.critical, {"approval_path": "missing"}, {"approvals": {}}, Level.not_ready),
        (Tier.critical, {"data_quality": "partial"}, {}, Level.pilot_ready),
    ],
)
def test_level(tier: Tier, states: dict[str, str], changes: dict[str, Any], level: Level) -> None:
    facts = dataclasses.replace(with_controls(ready_facts(tier), **states), **changes)
    assert evaluate(facts, DEFAULT_POLICY).level is level


def test_level_ignores_approvals_but_the_gates_do_not() -> None:
    facts = dataclasses.replace(
        ready_facts(Tier.critical),
        approvals={stage: ApprovalFacts(approvers=0, rejected_by=("x",)) for stage in STAGES},
    )
    evaluation = evaluate(facts, DEFAULT_POLICY)
    assert evaluation.level is Level.production_ready
    assert not evaluation.gates[PILOT].ready
    assert not evaluation.gates[PRODUCTION].ready
    assert codes(evaluation.gates[PRODUCTION]) == {"approvals_missing", "approval_rejected"}


def test_the_score_below_production_threshold_gives_pilot_ready() -> None:
    # critical: one control missing is 94.1 < 95, and also a missing required control.
    facts = with_control(ready_facts(Tier.critical), "rollout_plan", "missing")
    evaluation = evaluate(facts, DEFAULT_POLICY)
    assert evaluation.score == 94.1
    assert codes(evaluation.gates[PRODUCTION]) == {"score_below_threshold", "control_missing"}
    assert evaluation.level is Level.pilot_ready


# ---- valid_until -------------------------------------------------------------------------------


def statuses(facts: ReadinessFacts, at: datetime) -> dict[str, ControlStatus]:
    evaluation = evaluate(dataclasses.replace(facts, now=at), DEFAULT_POLICY)
    return {r.control: r.status for r in evaluation.controls}


@pytest.mark.parametrize("tier", [t for t in TIERS if FRESH_DAYS[t] is not None])
def test_valid_until_is_the_freshness_limit(tier: Tier) -> None:
    days = FRESH_DAYS[tier]
    assert days is not None
    facts = ready_facts(tier)
    evidence = dict(facts.evidence)
    evidence["training"] = EvidenceFact(EvidenceStatus.met, NOW - timedelta(days=days - 5))
    facts = dataclasses.replace(facts, evidence=evidence)
    valid_until = evaluate(facts, DEFAULT_POLICY).valid_until
    assert valid_until is not None
    limit = NOW + timedelta(days=5)
    assert limit <= valid_until <= limit + timedelta(seconds=1)
    # nothing changes until then, and at that moment training is stale
    before = statuses(facts, valid_until - timedelta(microseconds=1))
    assert before == statuses(facts, NOW)
    assert before["training"] is ControlStatus.met
    assert statuses(facts, valid_until)["training"] is ControlStatus.stale


@pytest.mark.parametrize("tier", TIERS)
def test_valid_until_is_the_earliest_future_expiry(tier: Tier) -> None:
    facts = ready_facts(tier)
    evidence = {
        **facts.evidence,
        # already expired: it is stale now, and does not set valid_until
        "workflow": EvidenceFact(EvidenceStatus.met, RECENT, expires_at=NOW - timedelta(days=1)),
        "monitoring": EvidenceFact(EvidenceStatus.met, RECENT, expires_at=NOW + timedelta(days=9)),
        "training": EvidenceFact(EvidenceStatus.met, RECENT, expires_at=NOW + timedelta(days=4)),
    }
    facts = dataclasses.replace(facts, evidence=evidence)
    evaluation = evaluate(facts, DEFAULT_POLICY)
    assert evaluation.valid_until == NOW + timedelta(days=4)
    assert statuses(facts, NOW + timedelta(days=4))["training"] is ControlStatus.stale


def test_valid_until_is_none_when_nothing_can_expire() -> None:
    assert evaluate(ready_facts(Tier.minimal), DEFAULT_POLICY).valid_until is None


def test_valid_until_picks_the_earlier_of_expiry_and_freshness() -> None:
    # critical (90 days): evidence recorded 80 days ago goes stale in 10 days, but an
    # expiry in 3 days comes first; without it the freshness limit decides.
    facts = ready_facts(Tier.critical)
    old = EvidenceFact(EvidenceStatus.met, NOW - timedelta(days=80))
    evidence = {**facts.evidence, "data_rules": old}
    facts = dataclasses.replace(facts, evidence=evidence)
    only_age = evaluate(facts, DEFAULT_POLICY).valid_until
    assert only_age is not None
    assert NOW + timedelta(days=10) <= only_age <= NOW + timedelta(days=10, seconds=1)

    evidence["scope"] = EvidenceFact(EvidenceStatus.met, RECENT)  # ignored: system field
    evidence["workflow"] = EvidenceFact(
        EvidenceStatus.met, RECENT, expires_at=NOW + timedelta(days=3)
    )
    facts = dataclasses.replace(facts, evidence=evidence)
    assert evaluate(facts, DEFAULT_POLICY).valid_until == NOW + timedelta(days=3)


def test_valid_until_counts_a_waiver_expiry() -> None:
    facts = with_control(ready_facts(Tier.minimal), "support_plan", "missing")
    facts = dataclasses.replace(facts, waivers={"support_plan": NOW + timedelta(days=2)})
    evaluation = evaluate(facts, DEFAULT_POLICY)
    assert evaluation.level is Level.production_ready
    assert evaluation.valid_until == NOW + timedelta(days=2)
    later = evaluate(dataclasses.replace(facts, now=NOW + timedelta(days=2)), DEFAULT_POLICY)
    assert status_of(later, "support_plan") is ControlStatus.missing
    assert later.level is Level.pilot_ready


# ---- properties --------------------------------------------------------------------------------

# missing < not_met < partial < met; stale behaves like missing.
RANK = {"missing": 0, "stale": 0, "not_met": 1, "partial": 2, "met": 3}
EVIDENCE_STATES = ["met", "partial", "not_met", "not_applicable", "missing", "stale"]
LEVEL_RANK = {Level.not_ready: 0, Level.pilot_ready: 1, Level.production_ready: 2}


def facts_from(
    tier: Tier,
    states: dict[str, str],
    *,
    waived: frozenset[str] = frozenset(),
    pilot: str | None = "pass",
    approvers: int = 3,
) -> ReadinessFacts:
    evidence: dict[str, EvidenceFact] = {}
    for control in EVIDENCE_CONTROLS:
        state = states[control]
        if state == "stale":
            evidence[control] = EvidenceFact(
                EvidenceStatus.met, RECENT, expires_at=NOW - timedelta(hours=1)
            )
        elif state != "missing":
            evidence[control] = EvidenceFact(EvidenceStatus(state), RECENT)
    return ReadinessFacts(
        tier=tier,
        system_fields={c: states[c] == "met" for c in SYSTEM_FIELDS},
        evidence=evidence,
        now=NOW,
        waivers=dict.fromkeys(waived, WAIVER_EXPIRY),
        pilot=None if pilot is None else PilotFact(pilot_id=1, outcome=pilot),
        approvals={stage: ApprovalFacts(approvers=approvers) for stage in STAGES},
    )


def state_strategy(control: str, evidence_states: list[str]) -> st.SearchStrategy[str]:
    if control in SYSTEM_FIELDS:
        return st.sampled_from(["met", "met", "met", "missing"])
    return st.sampled_from(evidence_states)


def states_strategy(evidence_states: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({c: state_strategy(c, evidence_states) for c in ALL_CONTROLS})


weights_strategy = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {c: st.floats(min_value=0, max_value=100, allow_nan=False) for c in ALL_CONTROLS}
    ),
    st.dictionaries(
        st.sampled_from(ALL_CONTROLS), st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5, 100.0])
    ),
)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, database=None)


@PROPERTY_SETTINGS
@given(
    tier=st.sampled_from(TIERS),
    states=states_strategy(EVIDENCE_STATES),
    weights=weights_strategy,
    waived=st.frozensets(st.sampled_from(ALL_CONTROLS)),
)
def test_score_stays_within_0_and_100(
    tier: Tier, states: dict[str, str], weights: dict[str, float], waived: frozenset[str]
) -> None:
    evaluation = evaluate(facts_from(tier, states, waived=waived), policy_with(weights=weights))
    assert 0.0 <= evaluation.score <= 100.0
    assert evaluation.score == round(evaluation.score, 1)
    for result in evaluation.controls:
        assert result.points in (None, 0.0, 0.5, 1.0)


# Biased towards met so that open gates are common and the "never closes" check has teeth.
BIASED_STATES = ["met"] * 12 + ["partial", "not_met", "not_applicable", "missing", "stale"]
IMPROVEMENTS = [
    (low, high) for low in RANK for high in RANK if low != high and RANK[low] <= RANK[high]
]


@pytest.mark.parametrize("tier", TIERS)
@PROPERTY_SETTINGS
@given(
    data=st.data(),
    states=states_strategy(BIASED_STATES),
    weights=weights_strategy,
    waived=st.frozensets(st.sampled_from(ALL_CONTROLS), max_size=3),
    pilot=st.sampled_from(["pass", "pass", "warning", "fail", None]),
    approvers=st.integers(min_value=0, max_value=3),
)
def test_improving_one_control_never_lowers_the_score_or_closes_a_gate(
    tier: Tier,
    data: st.DataObject,
    states: dict[str, str],
    weights: dict[str, float],
    waived: frozenset[str],
    pilot: str | None,
    approvers: int,
) -> None:
    control = data.draw(st.sampled_from(ALL_CONTROLS), label="control")
    if control in SYSTEM_FIELDS:
        low, high = "missing", "met"
    else:
        low, high = data.draw(st.sampled_from(IMPROVEMENTS), label="improvement")
    policy = policy_with(weights=weights)

    def facts_with(state: str) -> ReadinessFacts:
        return facts_from(
            tier, {**states, control: state}, waived=waived, pilot=pilot, approvers=approvers
        )

    before = evaluate(facts_with(low), policy)
    after = evaluate(facts_with(high), policy)
    assert after.score >= before.score
    if RANK[low] == RANK[high]:  # stale and missing are the same thing
        assert after.score == before.score
    for stage in STAGES:
        if before.gates[stage].ready:
            assert after.gates[stage].ready, items(after.gates[stage])
    assert LEVEL_RANK[after.level] >= LEVEL_RANK[before.level]


def test_the_improvement_property_sees_open_gates() -> None:
    """Guard against a vacuous property: the biased strategy does produce open gates."""
    states = dict.fromkeys(ALL_CONTROLS, "met")
    states["rollout_plan"] = "stale"
    before = evaluate(facts_from(Tier.limited, states), DEFAULT_POLICY)
    after = evaluate(facts_from(Tier.limited, {**states, "rollout_plan": "met"}), DEFAULT_POLICY)
    assert before.gates[PRODUCTION].ready
    assert after.gates[PRODUCTION].ready
    assert before.score < after.score
