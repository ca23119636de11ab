"""The portfolio report: aggregate queries over stored readiness, never a loop over systems,
or (unfiltered or by tier, once the process has built it) counts from the readiness mirror.

Stored readiness is as of each system's last evaluation; systems whose answer time has made
stale since are counted as stored (reads of one system re-evaluate; reports do not).
"""

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true
from sqlmodel import Session, col

from app.lifecycle.stages import GateStage, Stage
from app.models import (
    Evidence,
    Pilot,
    PilotResult,
    ReadinessBlocker,
    System,
    SystemLabel,
    Transition,
)
from app.policies import service as policy_service
from app.readiness import service as readiness_service
from app.readiness.tiers import TIER_ORDER
from app.reports.mirror import Mirror, mirror_for
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


def _scope(filters: SystemFilters) -> Select[int | None]:
    """The ids of the systems the report covers."""
    query = select(col(System.id))
    if filters.risk_tier:
        query = query.where(col(System.risk_tier) == filters.risk_tier)
    if filters.owner_team:
        query = query.where(col(System.owner_team) == filters.owner_team)
    for name, value in filters.labels:
        labelled = select(col(SystemLabel.system_id)).where(
            col(SystemLabel.name) == name, col(SystemLabel.value) == value
        )
        query = query.where(col(System.id).in_(labelled))
    return query


def _within(column: Any, filters: SystemFilters) -> ColumnElement[bool]:
    """`column` (a system id) is in the report's scope. Unfiltered, no condition at all:
    `id IN (SELECT id FROM systems)` would make PostgreSQL join every system to itself."""
    if not (filters.risk_tier or filters.owner_team or filters.labels):
        return true()
    return col(column).in_(_scope(filters))


def stuck_pilot(now: datetime, *, max_pilot_days: int) -> ColumnElement[bool]:
    """A pilot still running past its planned end or longer than the policy allows."""
    too_long = now - timedelta(days=max_pilot_days)
    return and_(
        col(Pilot.status) == "running",
        or_(col(Pilot.planned_end) < now, col(Pilot.created_at) < too_long),
    )


def top_blocking_controls(session: Session, *, filters: SystemFilters) -> list[GateBlockers]:
    """Per gate, the controls whose stored blocking items name the most systems."""
    blockers = []
    for gate in GateStage:
        systems = func.count(func.distinct(col(ReadinessBlocker.system_id)))
        rows = session.execute(
            select(col(ReadinessBlocker.control), systems)
            .where(
                col(ReadinessBlocker.gate) == gate.value,
                col(ReadinessBlocker.control).is_not(None),
                _within(ReadinessBlocker.system_id, filters),
            )
            .group_by(col(ReadinessBlocker.control))
            .order_by(systems.desc(), col(ReadinessBlocker.control))
            .limit(TOP_CONTROLS)
        )
        blockers.append(
            GateBlockers(
                gate=gate,
                controls=[BlockingControl(control=control, systems=n) for control, n in rows],
            )
        )
    return blockers


def _mirrored(session: Session, filters: SystemFilters) -> Mirror | None:
    """The process's mirror of stored readiness if it answers for this scope: it keeps
    counts by stage and tier, not by owner or label, and answers only once built (until
    then the aggregate queries do; see app.reports.warmup)."""
    if filters.owner_team or filters.labels:
        return None
    return mirror_for(session)


def top_blocking_in(mirror: Mirror, *, tier: str | None) -> list[GateBlockers]:
    """`top_blocking_controls` from the mirror's counts."""
    blockers = []
    for gate in GateStage:
        systems: Counter[str] = Counter()
        for (gate_name, control, _, system_tier), n in mirror.blocked_systems.items():
            if gate_name == gate.value and tier in (None, system_tier):
                systems[control] += n
        top = sorted(systems.items(), key=lambda item: (-item[1], item[0]))[:TOP_CONTROLS]
        blockers.append(
            GateBlockers(
                gate=gate,
                controls=[BlockingControl(control=control, systems=n) for control, n in top],
            )
        )
    return blockers


def stale_evidence(session: Session, *, filters: SystemFilters, now: datetime) -> tuple[int, int]:
    """Current evidence past its expiry or its tier's freshness: (rows, systems)."""
    rules = policy_service.active_rules(session).rules
    stale_conditions = []
    for tier in TIER_ORDER:
        fresh_days = rules.tier(tier).evidence_fresh_days
        stale = col(Evidence.expires_at) <= now
        if fresh_days is not None:
            stale = or_(stale, col(Evidence.recorded_at) < now - timedelta(days=fresh_days))
        stale_conditions.append(and_(col(System.risk_tier) == tier.value, stale))
    rows, systems = session.execute(
        select(func.count(), func.count(func.distinct(col(Evidence.system_id))))
        .join(System, col(System.id) == col(Evidence.system_id))
        .where(_within(System.id, filters), col(Evidence.is_current), or_(*stale_conditions))
    ).one()
    return rows, systems


def _counted(
    session: Session, in_scope: ColumnElement[bool], now: datetime
) -> tuple[list[StageTierCount], int, float | None, int, int]:
    """The portfolio's counts of systems by aggregate queries over the systems in scope:
    (by stage and tier, total, average score, ready for next stage, drifted)."""

    by_stage_tier = [
        StageTierCount(stage=stage, tier=tier, systems=count)
        for stage, tier, count in session.execute(
            select(col(System.stage), col(System.risk_tier), func.count())
            .where(in_scope)
            .group_by(col(System.stage), col(System.risk_tier))
            .order_by(col(System.stage), col(System.risk_tier))
        )
    ]
    total, average = session.execute(
        select(func.count(), func.avg(col(System.score))).where(in_scope)
    ).one()
    ready_next = session.execute(
        select(func.count()).where(
            in_scope,
            or_(
                and_(col(System.stage) == Stage.proposed.value, col(System.pilot_ready)),
                and_(
                    col(System.stage).in_([Stage.pilot.value, Stage.suspended.value]),
                    col(System.production_ready),
                ),
            ),
        )
    ).scalar_one()
    return by_stage_tier, total, average, ready_next, drifted_count(session, in_scope, now=now)


def drifted_count(session: Session, in_scope: ColumnElement[bool], *, now: datetime) -> int:
    """Systems in scope in production whose production gate fails now, by queries."""
    valid = readiness_service.stored_answer_valid(now)
    in_production = and_(in_scope, col(System.stage) == Stage.production.value)
    drifted: int = session.execute(
        select(func.count()).where(in_production, valid, ~col(System.production_ready))
    ).scalar_one()
    # Production systems whose stored answer time has made stale are judged afresh, as the
    # drift report judges them (usually few: those whose evidence expired since a write).
    stale_production = list(session.execute(select(System).where(in_production, ~valid)).scalars())
    for evaluation, _ in readiness_service.evaluate_many(session, stale_production, now=now):
        drifted += not evaluation.gates[GateStage.production].ready
    return drifted


def _pilot_results(
    session: Session, *, filters: SystemFilters
) -> tuple[dict[str, int], dict[str, int]]:
    """Concluded pilots by outcome, and findings by kind, by aggregate queries."""
    outcomes = {
        row.outcome: row.systems
        for row in session.execute(
            select(col(Pilot.outcome), func.count().label("systems"))
            .where(_within(Pilot.system_id, filters), col(Pilot.status) == "concluded")
            .group_by(col(Pilot.outcome))
        )
    }
    # Findings are short JSON lists on results, unnested and counted in the database.
    elements = (
        func.json_array_elements_text
        if session.get_bind().dialect.name == "postgresql"
        else func.json_each
    )
    finding = elements(col(PilotResult.findings)).table_valued("value").alias("finding")
    findings: dict[str, int] = dict(
        session.execute(
            select(finding.c.value, func.count())
            .select_from(PilotResult)
            .join(finding, true())
            .join(Pilot, col(Pilot.id) == col(PilotResult.pilot_id))
            .where(_within(Pilot.system_id, filters))
            .group_by(finding.c.value)
        ).all()
    )
    return outcomes, findings


def _by_first(counts: Counter[tuple[str, str]], *, tier: str | None) -> dict[str, int]:
    """(name, tier) counts summed by name over the tiers in scope."""
    summed: Counter[str] = Counter()
    for (name, system_tier), n in counts.items():
        if tier in (None, system_tier):
            summed[name] += n
    return dict(summed)


def portfolio(session: Session, *, filters: SystemFilters, now: datetime) -> Portfolio:
    in_scope = _within(System.id, filters)
    if (built := _mirrored(session, filters)) is not None:
        with built.synced(session, now=now) as mirror:
            tier = filters.risk_tier
            counts = {place: n for place, n in mirror.systems.items() if tier in (None, place[1])}
            tenths = sum(n for place, n in mirror.score_tenths.items() if place in counts)
            ready_next = sum(n for key, n in mirror.ready_next.items() if tier in (None, key))
            drifted = sum(n for key, n in mirror.drifted.items() if tier in (None, key))
            blockers = top_blocking_in(mirror, tier=tier)
            stale = sum(n for key, n in mirror.stale_evidence.items() if tier in (None, key))
            stale_systems = sum(
                n for key, n in mirror.systems_with_stale_evidence.items() if tier in (None, key)
            )
            outcomes = _by_first(mirror.pilot_outcomes, tier=tier)
            findings = _by_first(mirror.findings, tier=tier)
        by_stage_tier = [
            StageTierCount(stage=stage, tier=tier, systems=n)
            for (stage, tier), n in sorted(counts.items())
        ]
        total = sum(counts.values())
        average = tenths / 10 / total if total else None
    else:
        by_stage_tier, total, average, ready_next, drifted = _counted(session, in_scope, now)
        blockers = top_blocking_controls(session, filters=filters)
        stale, stale_systems = stale_evidence(session, filters=filters, now=now)
        outcomes, findings = _pilot_results(session, filters=filters)

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
        systems=total,
        by_stage_and_tier=by_stage_tier,
        average_score=round(average, 1) if average is not None else None,
        ready_for_next_stage=ready_next,
        drifted=drifted,
        top_blocking_controls=blockers,
        stale_evidence=stale,
        systems_with_stale_evidence=stale_systems,
        stuck_pilots=stuck,
        pilot_outcomes=outcomes,
        findings=dict(sorted(findings.items())),
        overrides_last_90_days=overrides,
    )


def drift(
    session: Session, *, filters: SystemFilters, now: datetime, after: int | None, limit: int
) -> tuple[list[DriftedSystem], int | None]:
    """Systems in production whose production gate fails now, by registration order.

    Candidates are the ones stored as failing, plus those whose stored answer time has made
    stale (evidence expired, an approval lapsed without any write): only those are evaluated
    afresh, so the cost follows the drifted and the stale, not the portfolio.
    """
    stale = col(System.readiness_valid_until) <= now
    query = (
        select(System)
        .where(
            _within(System.id, filters),
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


# The systems each gate stands before: proposed ones head for a pilot; pilot and suspended
# ones for production, and production ones must keep passing its gate (else they drift).
HEADING_FOR = {
    GateStage.pilot: (Stage.proposed,),
    GateStage.production: (Stage.pilot, Stage.suspended, Stage.production),
}


def _blocked(
    session: Session, gate: GateStage, heading: ColumnElement[bool], *split_by: Any
) -> Any:
    """Systems whose stored `gate` a control blocks, per control (and `split_by`), each
    system counted once."""
    return session.execute(
        select(col(ReadinessBlocker.control), *split_by, func.count(func.distinct(col(System.id))))
        .join(System, col(System.id) == col(ReadinessBlocker.system_id))
        .where(
            heading,
            col(ReadinessBlocker.gate) == gate.value,
            col(ReadinessBlocker.control).is_not(None),
        )
        .group_by(col(ReadinessBlocker.control), *split_by)
    )


def gaps(session: Session, *, filters: SystemFilters, now: datetime) -> GapsReport:
    """Per gate, the controls that block the systems heading for it, by tier and reason.

    Aggregates over the stored blocking items, like the portfolio's blocking controls: a
    system whose stored answer time has since made stale counts as stored.
    """
    tiers = [tier.value for tier in TIER_ORDER]
    if (built := _mirrored(session, filters)) is not None:
        with built.synced(session, now=now) as mirror:
            report = [
                _gaps_in(mirror, gate, stages, tiers=tiers, tier=filters.risk_tier)
                for gate, stages in HEADING_FOR.items()
            ]
        return GapsReport(generated_at=now, gates=report)
    report = []
    for gate, stages in HEADING_FOR.items():
        heading = and_(
            _within(System.id, filters), col(System.stage).in_([stage.value for stage in stages])
        )
        systems_by_tier = dict.fromkeys(tiers, 0)
        by_tier = select(col(System.risk_tier), func.count()).where(heading)
        for tier, count in session.execute(by_tier.group_by(col(System.risk_tier))):
            systems_by_tier[tier] = count

        controls: dict[str, ControlGap] = {}
        # A system has one tier, so a control's per-tier counts add up to its total: one
        # pass over the blocking rows fewer.
        for control, tier, count in _blocked(session, gate, heading, col(System.risk_tier)):
            gap = controls.get(control) or ControlGap(
                control=control, systems=0, by_tier=dict.fromkeys(tiers, 0), by_reason={}
            )
            controls[control] = gap
            gap.by_tier[tier] = count
            gap.systems += count
        for control, code, count in _blocked(session, gate, heading, col(ReadinessBlocker.code)):
            controls[control].by_reason[code] = count
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


def _gaps_in(
    mirror: Mirror,
    gate: GateStage,
    stages: tuple[Stage, ...],
    *,
    tiers: list[str],
    tier: str | None,
) -> GateGaps:
    """One gate of the gaps report from the mirror's counts."""
    heading = {stage.value for stage in stages}

    def counted(stage: str, system_tier: str) -> bool:
        return stage in heading and tier in (None, system_tier)

    systems_by_tier = dict.fromkeys(tiers, 0)
    for (stage, system_tier), n in mirror.systems.items():
        if counted(stage, system_tier):
            systems_by_tier[system_tier] += n
    controls: dict[str, ControlGap] = {}
    for (gate_name, control, stage, system_tier), n in mirror.blocked_systems.items():
        if gate_name == gate.value and counted(stage, system_tier):
            gap = controls.get(control) or ControlGap(
                control=control, systems=0, by_tier=dict.fromkeys(tiers, 0), by_reason={}
            )
            controls[control] = gap
            gap.by_tier[system_tier] += n
            gap.systems += n
    for (gate_name, control, code, stage, system_tier), n in mirror.blocked.items():
        if gate_name == gate.value and counted(stage, system_tier):
            reasons = controls[control].by_reason
            reasons[code] = reasons.get(code, 0) + n
    return GateGaps(
        gate=gate,
        stages=list(stages),
        systems=sum(systems_by_tier.values()),
        systems_by_tier=systems_by_tier,
        controls=sorted(controls.values(), key=lambda gap: (-gap.systems, gap.control)),
    )
