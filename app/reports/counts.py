"""The numbers of the portfolio, for one scope of systems: what the portfolio and gaps
reports and the /metrics portfolio gauges render, held in one model with two producers,
the aggregate queries (`app.reports.queries.counts`) and the in-process mirror
(`app.reports.mirror.Mirror.counts`). `app.reports.service.portfolio_counts` picks one.

Every number is a count of systems, evidence rows or pilots, kept whole (all controls,
not only the top ones), so counts of disjoint scopes add up to the counts of their union
and two producers can be compared number for number. What a report shows of them (the top
controls, the average score, every tier named) is derived at rendering.

Stored readiness is as of each system's last evaluation; systems whose answer time has
made stale since, or that a release of other rules left to re-evaluate
(app.readiness.reevaluation), are counted as stored, except for drift, which judges them
afresh (as the drift report does).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Flag, auto
from typing import TypeVar

from app.lifecycle.stages import GateStage, Stage

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
