"""The numbers of the portfolio, for one scope of systems: what the portfolio and gaps
reports and the /metrics portfolio gauges render, held in one model with two producers,
the aggregate queries (`app.reports.queries.counts`) and the in-process mirror
(`app.reports.mirror.Mirror.counts`). `app.reports.service.portfolio_counts` picks one.

Every number is a count of systems, evidence rows or pilots, kept whole (all controls,
not only the top ones), so counts of disjoint scopes add up to the counts of their union
and two producers can be compared number for number. What a report shows of them (the top
controls, the average score, every tier named) is derived at rendering.

Stored readiness is as of each system's last evaluation; systems whose answer time has
made stale since are counted as stored, except for drift, which judges them afresh (as the
drift report does). A stored answer of other rules than the running code's (one a release
left to re-evaluate, app.readiness.reevaluation) is counted by neither producer: each
judges such a system afresh and counts that answer in its place (`Judged`), as it will be
stored once re-evaluated. One exception: in the minutes after a release that changed the
rules of a large portfolio, while more than JUDGED_AT_MOST answers wait for the background
re-evaluation, the aggregate queries count them as stored (but for drift) rather than
evaluate thousands of systems on every report and scrape; the mirror judges each once.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import Flag, auto
from typing import Any, TypeVar

from app.readiness.scoring import Evaluation
from app.vocabulary import GateStage, Stage

K = TypeVar("K", str, tuple[str, str], tuple[str, str, str])


class Need(Flag):
    """The parts of the counts a caller renders: a producer counts only those, so a report
    pays for no query another one needs."""

    SYSTEMS = auto()  # systems and their stored scores, by stage and tier
    READY = auto()  # ready for their next stage
    DRIFT = auto()  # in production with a failing production gate, judged now
    BLOCKING = auto()  # systems per gate and blocking control
    GAPS = auto()  # the same for the systems heading for each gate, by tier and by reason
    STALE = auto()  # stale current evidence
    PILOT_RESULTS = auto()  # concluded pilots by outcome, findings by kind
    STUCK = auto()  # stuck pilots


# The most answers of other rules the aggregate queries judge afresh on each call.
JUDGED_AT_MOST = 1000

# The parts counted from readiness answers (the others from evidence and pilots).
ANSWER_NEEDS = Need.SYSTEMS | Need.READY | Need.DRIFT | Need.BLOCKING | Need.GAPS

# What the portfolio report, the gaps report and the /metrics gauges render.
PORTFOLIO_NEEDS = (
    Need.SYSTEMS | Need.READY | Need.DRIFT | Need.BLOCKING | Need.STALE | Need.PILOT_RESULTS
)
GAPS_NEEDS = Need.SYSTEMS | Need.GAPS
METRICS_NEEDS = Need.SYSTEMS | Need.DRIFT | Need.BLOCKING | Need.STALE | Need.STUCK
EVERYTHING = PORTFOLIO_NEEDS | GAPS_NEEDS | METRICS_NEEDS

# The systems each gate stands before: proposed ones head for a pilot; pilot and suspended
# ones for production, and production ones must keep passing its gate (else they drift).
HEADING_FOR: dict[GateStage, tuple[Stage, ...]] = {
    GateStage.pilot: (Stage.proposed,),
    GateStage.production: (Stage.pilot, Stage.suspended, Stage.production),
}
# The gate a system of each stage heads for (retired ones head for none).
GATE_AHEAD: dict[str, str] = {
    stage.value: gate.value for gate, stages in HEADING_FOR.items() for stage in stages
}


@dataclass(frozen=True)
class PortfolioCounts:
    """The counts of one scope. Parts not in `needs` were not counted and stay empty."""

    needs: Need
    # (stage, tier): systems, only where there are any. Need.SYSTEMS.
    systems: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # Their stored scores added up, in tenths (scores have one decimal). Need.SYSTEMS.
    score_tenths: int = 0
    # Proposed systems whose pilot gate passes, pilot or suspended ones whose production
    # gate passes, as stored. Need.READY.
    ready_for_next_stage: int = 0
    drifted: int = 0  # Need.DRIFT
    # (gate, control): systems whose stored gate the control blocks. Need.BLOCKING.
    blocking: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # Of the systems heading for each gate (HEADING_FOR), those a control blocks there:
    # (gate, control, tier): systems, and (gate, control, code): systems. Need.GAPS.
    heading_blocked: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    heading_reasons: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    # Current evidence past its expiry or its tier's freshness, and the systems with any.
    # Need.STALE.
    stale_evidence: int = 0
    systems_with_stale_evidence: int = 0
    # Concluded pilots by outcome, and the findings their results report. Need.PILOT_RESULTS.
    pilot_outcomes: Mapping[str, int] = field(default_factory=dict)
    findings: Mapping[str, int] = field(default_factory=dict)
    # Running past their planned end or the policy's max_pilot_days. Need.STUCK.
    stuck_pilots: int = 0

    def __add__(self, other: "PortfolioCounts") -> "PortfolioCounts":
        """The counts of the union of two disjoint scopes counted for the same needs."""
        if self.needs != other.needs:
            raise ValueError(f"counts of {self.needs} and {other.needs} do not add up")
        total: dict[str, Any] = {}
        for part in fields(self):
            if part.name == "needs":
                continue
            mine, theirs = getattr(self, part.name), getattr(other, part.name)
            if isinstance(mine, int):
                total[part.name] = mine + theirs
            else:
                total[part.name] = nonzero((Counter(mine) + Counter(theirs)).items())
        return PortfolioCounts(needs=self.needs, **total)

    @property
    def total(self) -> int:
        return sum(self.systems.values())

    @property
    def average_score(self) -> float | None:
        """The stored scores' average, to one decimal; None without systems."""
        total = self.total
        return round(self.score_tenths / 10 / total, 1) if total else None

    def top_blocking(self, gate: GateStage, limit: int) -> list[tuple[str, int]]:
        """The controls blocking the most systems at `gate`, most first, then by name."""
        controls = [(control, n) for (at, control), n in self.blocking.items() if at == gate]
        return sorted(controls, key=lambda item: (-item[1], item[0]))[:limit]


def nonzero(counts: Iterable[tuple[K, int]]) -> dict[K, int]:
    """The counts without zeros, by key, so that equal counts are equal mappings and render
    alike whichever producer made them."""
    return {key: n for key, n in sorted(counts) if n}


def ready_for_next_stage(stage: str, pilot_ready: bool, production_ready: bool) -> bool:
    """Whether the gate a system's stage heads for passes: a proposed one's pilot gate, a
    pilot or suspended one's production gate (production ones count as drift instead)."""
    if stage == Stage.proposed.value:
        return pilot_ready
    return stage in (Stage.pilot.value, Stage.suspended.value) and production_ready


Blocking = tuple[tuple[str, str, str], ...]  # distinct (gate, control, code), control set


@dataclass(frozen=True)
class Judged:
    """One system's answer judged now, counted in place of a stored one of other rules."""

    stage: str
    tier: str
    score: float
    pilot_ready: bool
    production_ready: bool
    blocking: Blocking

    @classmethod
    def of(cls, stage: str, tier: str, evaluation: Evaluation) -> "Judged":
        return cls(
            stage=stage,
            tier=tier,
            score=evaluation.score,
            pilot_ready=evaluation.gates[GateStage.pilot].ready,
            production_ready=evaluation.gates[GateStage.production].ready,
            blocking=blocking_of(evaluation),
        )


def blocking_of(evaluation: Evaluation) -> Blocking:
    """The distinct (gate, control, code) of the blocking items that name a control, as
    the stored blocking rows give them to the counts."""
    return tuple(
        sorted(
            {
                (gate.value, item.control, item.code.value)
                for gate, result in evaluation.gates.items()
                for item in result.blocking
                if item.control is not None
            }
        )
    )


def judged_counts(answers: Iterable[Judged], needs: Need) -> PortfolioCounts:
    """The parts of `needs` counted from readiness answers (ANSWER_NEEDS), of `answers`;
    the other parts stay empty, to be added to the counts that have them."""
    systems: Counter[tuple[str, str]] = Counter()
    score_tenths = ready = drifted = 0
    blocking: Counter[tuple[str, str]] = Counter()
    by_tier: Counter[tuple[str, str, str]] = Counter()
    by_reason: Counter[tuple[str, str, str]] = Counter()
    for answer in answers:
        systems[(answer.stage, answer.tier)] += 1
        score_tenths += round(answer.score * 10)
        ready += ready_for_next_stage(answer.stage, answer.pilot_ready, answer.production_ready)
        drifted += answer.stage == Stage.production.value and not answer.production_ready
        blocking.update({(gate, control) for gate, control, _ in answer.blocking})
        ahead = GATE_AHEAD.get(answer.stage)
        by_tier.update(
            {(gate, control, answer.tier) for gate, control, _ in answer.blocking if gate == ahead}
        )
        by_reason.update(triple for triple in answer.blocking if triple[0] == ahead)
    found: dict[str, Any] = {}
    if Need.SYSTEMS in needs:
        found["systems"], found["score_tenths"] = nonzero(systems.items()), score_tenths
    if Need.READY in needs:
        found["ready_for_next_stage"] = ready
    if Need.DRIFT in needs:
        found["drifted"] = drifted
    if Need.BLOCKING in needs:
        found["blocking"] = nonzero(blocking.items())
    if Need.GAPS in needs:
        found["heading_blocked"] = nonzero(by_tier.items())
        found["heading_reasons"] = nonzero(by_reason.items())
    return PortfolioCounts(needs=needs, **found)
