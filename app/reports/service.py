"""The portfolio, drift and gaps reports.

The portfolio and gaps reports and the /metrics portfolio gauges render `PortfolioCounts`,
which `portfolio_counts` takes from the process's mirror of stored readiness once it is
built and counts the scope (unfiltered, or by stage and tier), and otherwise from the
aggregate queries: the same numbers either way. Their listings (stuck pilots, overrides)
and the drift report are queries.
"""

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlmodel import Session, col

from app.lifecycle.stages import GateStage, Stage
from app.models import Pilot, System, Transition
from app.policies import service as policy_service
from app.readiness import service as readiness_service
from app.readiness.tiers import TIER_ORDER
from app.reports import queries
from app.reports.counts import GAPS_NEEDS, HEADING_FOR, PORTFOLIO_NEEDS, Need, PortfolioCounts
from app.reports.mirror import mirror_for
from app.reports.queries import stuck_pilot, within
from app.reports.schemas import (
    BlockingControl,
    ControlGap,
    DriftedSystem,
    GapsReport,
    GateBlockers,
    GateGaps,
    OverrideRecord,
    Portfolio,
    StageTierCount,
    StuckPilot,
)
from app.systems.service import SystemFilters

TOP_CONTROLS = 10
LISTED = 50
OVERRIDE_WINDOW = timedelta(days=90)


def portfolio_counts(
    session: Session, *, filters: SystemFilters, now: datetime, needs: Need
) -> PortfolioCounts:
    """The counts of the scope at `now`: from the mirror when it is built and counts this
    scope, brought in step first; else by the aggregate queries (see app.reports.warmup)."""
    mirror = mirror_for(session)
    if mirror is not None and mirror.answers(filters, needs):
        return mirror.counts(session, filters=filters, now=now, needs=needs)
    return queries.counts(session, filters=filters, now=now, needs=needs)


def top_blocking_controls(counts: PortfolioCounts) -> list[GateBlockers]:
    """Per gate, the controls whose stored blocking items name the most systems."""
    return [
        GateBlockers(
            gate=gate,
            controls=[
                BlockingControl(control=control, systems=n)
                for control, n in counts.top_blocking(gate, TOP_CONTROLS)
            ],
        )
        for gate in GateStage
    ]


def portfolio(session: Session, *, filters: SystemFilters, now: datetime) -> Portfolio:
    counts = portfolio_counts(session, filters=filters, now=now, needs=PORTFOLIO_NEEDS)
    in_scope = within(System.id, filters)
    rules = policy_service.active_rules(session).rules

    stuck = [
        StuckPilot(
            pilot_id=pilot_id,
            system_key=key,
            name=name,
            started_at=started,
            planned_end=planned_end,
        )
        for pilot_id, key, name, started, planned_end in session.execute(
            select(
                col(Pilot.id),
                col(System.key),
                col(Pilot.name),
                col(Pilot.created_at),
                col(Pilot.planned_end),
            )
            .join(System, col(System.id) == col(Pilot.system_id))
            .where(in_scope, stuck_pilot(now, max_pilot_days=rules.max_pilot_days))
            .order_by(col(Pilot.created_at))
            .limit(LISTED)
        )
    ]
    overrides = [
        OverrideRecord(
            system_key=key,
            from_stage=from_stage,
            to_stage=to_stage,
            actor=actor,
            justification=justification,
            occurred_at=occurred_at,
        )
        for key, from_stage, to_stage, actor, justification, occurred_at in session.execute(
            select(
                col(System.key),
                col(Transition.from_stage),
                col(Transition.to_stage),
                col(Transition.actor_name),
                col(Transition.override_justification),
                col(Transition.occurred_at),
            )
            .join(System, col(System.id) == col(Transition.system_id))
            .where(
                in_scope,
                col(Transition.override_justification).is_not(None),
                col(Transition.occurred_at) >= now - OVERRIDE_WINDOW,
            )
            .order_by(col(Transition.id).desc())
            .limit(LISTED)
        )
    ]
    return Portfolio(
        generated_at=now,
        systems=counts.total,
        by_stage_and_tier=[
            StageTierCount(stage=stage, tier=tier, systems=n)
            for (stage, tier), n in counts.systems.items()
        ],
        average_score=counts.average_score,
        ready_for_next_stage=counts.ready_for_next_stage,
        drifted=counts.drifted,
        top_blocking_controls=top_blocking_controls(counts),
        stale_evidence=counts.stale_evidence,
        systems_with_stale_evidence=counts.systems_with_stale_evidence,
        stuck_pilots=stuck,
        pilot_outcomes=dict(counts.pilot_outcomes),
        findings=dict(counts.findings),
        overrides_last_90_days=overrides,
    )


def drift(
    session: Session, *, filters: SystemFilters, now: datetime, after: int | None, limit: int
) -> tuple[list[DriftedSystem], int | None]:
    """Systems in production whose production gate fails now, by registration order.

    Candidates are the ones stored as failing, plus those whose stored answer no longer
    holds (`stored_answer_valid`: time made it stale, evidence expired, an approval lapsed
    without any write): only those are evaluated afresh, so the cost follows the drifted and
    the stale, not the portfolio.
    """
    stale = ~readiness_service.stored_answer_valid(now)
    query = (
        select(System)
        .where(
            within(System.id, filters),
            col(System.stage) == Stage.production.value,
            or_(~col(System.production_ready), stale),
        )
        .order_by(col(System.id))
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(col(System.id) > after)
    candidates = list(session.execute(query).scalars())
    drifted = []
    evaluations = readiness_service.evaluate_many(session, candidates[:limit], now=now)
    for system, (evaluation, readiness) in zip(candidates[:limit], evaluations, strict=True):
        gate = readiness.gates.production
        if not gate.ready:
            drifted.append(
                DriftedSystem(
                    system_key=system.key,
                    risk_tier=system.risk_tier,
                    score=evaluation.score,
                    blocking=gate.blocking,
                )
            )
    more = candidates[limit - 1].id if len(candidates) > limit else None
    return drifted, more


def gaps(session: Session, *, filters: SystemFilters, now: datetime) -> GapsReport:
    """Per gate, the controls that block the systems heading for it, by tier and reason.

    Counts over the stored blocking items, like the portfolio's blocking controls: a
    system whose stored answer time has since made stale counts as stored.
    """
    counts = portfolio_counts(session, filters=filters, now=now, needs=GAPS_NEEDS)
    tiers = [tier.value for tier in TIER_ORDER]
    report = []
    for gate, stages in HEADING_FOR.items():
        heading = {stage.value for stage in stages}
        systems_by_tier = dict.fromkeys(tiers, 0)
        for (stage, tier), n in counts.systems.items():
            if stage in heading:
                systems_by_tier[tier] += n
        controls: dict[str, ControlGap] = {}
        for (at, control, tier), n in counts.heading_blocked.items():
            if at == gate:
                gap = controls.get(control) or ControlGap(
                    control=control, systems=0, by_tier=dict.fromkeys(tiers, 0), by_reason={}
                )
                controls[control] = gap
                gap.by_tier[tier] = n
                gap.systems += n  # a system has one tier: its control's tiers add up
        for (at, control, code), n in counts.heading_reasons.items():
            if at == gate:
                controls[control].by_reason[code] = n
        report.append(
            GateGaps(
                gate=gate,
                stages=list(stages),
                systems=sum(systems_by_tier.values()),
                systems_by_tier=systems_by_tier,
                controls=sorted(controls.values(), key=lambda gap: (-gap.systems, gap.control)),
            )
        )
    return GapsReport(generated_at=now, gates=report)
