"""The portfolio's counts by aggregate queries over stored readiness, never a loop over
systems (but for drift, where answers time has made stale are judged afresh, and for the
systems whose stored answer is of other rules, judged afresh in its place until they are
stored again): one of the two producers of `PortfolioCounts`, for any scope the reports
take, on SQLite and PostgreSQL."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true
from sqlmodel import Session, col

from app.lifecycle.stages import GateStage, Stage
from app.models import Evidence, Pilot, PilotResult, ReadinessBlocker, System
from app.policies import service as policy_service
from app.readiness import service as readiness_service
from app.readiness.tiers import TIER_ORDER
from app.reports.counts import (
    ANSWER_NEEDS,
    HEADING_FOR,
    JUDGED_AT_MOST,
    Judged,
    Need,
    PortfolioCounts,
    judged_counts,
    nonzero,
)
from app.systems.service import SystemFilters, matching


def _scope(filters: SystemFilters) -> Select[int | None]:
    """The ids of the systems the report covers."""
    if filters.ready_for:
        # Reports count stored gate readiness themselves; no report takes this filter.
        raise ValueError("reports do not filter by ready_for")
    return matching(select(col(System.id)), filters)


def within(column: Any, filters: SystemFilters) -> ColumnElement[bool]:
    """`column` (a system id) is in the report's scope. Unfiltered, no condition at all:
    `id IN (SELECT id FROM systems)` would make PostgreSQL join every system to itself."""
    if filters == SystemFilters():
        return true()
    return col(column).in_(_scope(filters))


def stuck_pilot(now: datetime, *, max_pilot_days: int) -> ColumnElement[bool]:
    """A pilot still running past its planned end or longer than the policy allows."""
    too_long = now - timedelta(days=max_pilot_days)
    return and_(
        col(Pilot.status) == "running",
        or_(col(Pilot.planned_end) < now, col(Pilot.created_at) < too_long),
    )


def counts(
    session: Session, *, filters: SystemFilters, now: datetime, needs: Need
) -> PortfolioCounts:
    """The parts of the counts in `needs` for the systems `filters` select, at `now`."""
    in_scope = within(System.id, filters)
    blocking_in_scope = within(ReadinessBlocker.system_id, filters)
    of_other_rules = _of_other_rules(session, in_scope) if needs & ANSWER_NEEDS else []
    if of_other_rules:  # rare: only until a release's re-evaluation has stored them anew
        in_scope = and_(in_scope, ~readiness_service.other_rules())
        blocking_in_scope = and_(
            blocking_in_scope,
            col(ReadinessBlocker.system_id).not_in(
                select(col(System.id)).where(readiness_service.other_rules())
            ),
        )
    found: dict[str, Any] = {}
    if Need.SYSTEMS in needs:
        found["systems"], found["score_tenths"] = _systems(session, in_scope)
    if Need.READY in needs:
        found["ready_for_next_stage"] = _ready_next(session, in_scope)
    if Need.DRIFT in needs:
        found["drifted"] = drifted_count(session, in_scope, now=now)
    if Need.BLOCKING in needs:
        found["blocking"] = _blocking(session, blocking_in_scope)
    if Need.GAPS in needs:
        found["heading_blocked"], found["heading_reasons"] = _gaps(session, in_scope)
    if Need.STALE in needs:
        stale = _stale_evidence(session, filters=filters, now=now)
        found["stale_evidence"], found["systems_with_stale_evidence"] = stale
    if Need.PILOT_RESULTS in needs:
        found["pilot_outcomes"], found["findings"] = _pilot_results(session, filters=filters)
    if Need.STUCK in needs:
        found["stuck_pilots"] = _stuck(session, filters, now=now)
    stored = PortfolioCounts(needs=needs, **found)
    if not of_other_rules:
        return stored
    evaluations = readiness_service.evaluate_many(session, of_other_rules, now=now)
    judged = (
        Judged.of(system.stage, system.risk_tier, evaluation)
        for system, (evaluation, _) in zip(of_other_rules, evaluations, strict=True)
    )
    return stored + judged_counts(judged, needs)


def _of_other_rules(session: Session, in_scope: ColumnElement[bool]) -> list[System]:
    """The systems in scope whose stored answer is of other rules than the running code's,
    to judge afresh; none while more than JUDGED_AT_MOST wait in the whole database."""
    waiting = readiness_service.count_to_reevaluate(session, only_other_rules=True)
    if not waiting or waiting > JUDGED_AT_MOST:
        return []
    return list(
        session.execute(
            select(System).where(in_scope, readiness_service.other_rules()).order_by(col(System.id))
        ).scalars()
    )


def _systems(
    session: Session, in_scope: ColumnElement[bool]
) -> tuple[dict[tuple[str, str], int], int]:
    """Systems by (stage, tier), and their stored scores added up in tenths."""
    systems, tenths = {}, 0
    for stage, tier, count, scores in session.execute(
        select(col(System.stage), col(System.risk_tier), func.count(), func.sum(col(System.score)))
        .where(in_scope)
        .group_by(col(System.stage), col(System.risk_tier))
    ):
        systems[(stage, tier)] = count
        tenths += round(scores * 10)
    return nonzero(systems.items()), tenths


def _ready_next(session: Session, in_scope: ColumnElement[bool]) -> int:
    ready: int = session.execute(
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
    return ready


def drifted_count(session: Session, in_scope: ColumnElement[bool], *, now: datetime) -> int:
    """Systems in scope in production whose production gate fails now."""
    valid = readiness_service.stored_answer_valid(now)
    in_production = and_(in_scope, col(System.stage) == Stage.production.value)
    drifted: int = session.execute(
        select(func.count()).where(in_production, valid, ~col(System.production_ready))
    ).scalar_one()
    # Production systems whose stored answer is no longer valid are judged afresh, as the
    # drift report judges them (usually few: those whose evidence expired since a write).
    stale_production = list(session.execute(select(System).where(in_production, ~valid)).scalars())
    for evaluation, _ in readiness_service.evaluate_many(session, stale_production, now=now):
        drifted += not evaluation.gates[GateStage.production].ready
    return drifted


def _blocking(session: Session, in_scope: ColumnElement[bool]) -> dict[tuple[str, str], int]:
    """Per gate and control, the systems whose stored blocking items name it (`in_scope` a
    condition on the blocking rows). One query per gate, each read from the
    (gate, control, system_id) index."""
    blocking: dict[tuple[str, str], int] = {}
    for gate in GateStage:
        systems = func.count(func.distinct(col(ReadinessBlocker.system_id)))
        rows = session.execute(
            select(col(ReadinessBlocker.control), systems)
            .where(
                col(ReadinessBlocker.gate) == gate.value,
                col(ReadinessBlocker.control).is_not(None),
                in_scope,
            )
            .group_by(col(ReadinessBlocker.control))
        )
        blocking.update(((gate.value, control), n) for control, n in rows)
    return nonzero(blocking.items())


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


def _gaps(
    session: Session, in_scope: ColumnElement[bool]
) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str, str], int]]:
    """Of the systems heading for each gate, those each control blocks there, by tier and by
    blocking code."""
    by_tier, by_reason = {}, {}
    for gate, stages in HEADING_FOR.items():
        heading = and_(in_scope, col(System.stage).in_([stage.value for stage in stages]))
        for control, tier, n in _blocked(session, gate, heading, col(System.risk_tier)):
            by_tier[(gate.value, control, tier)] = n
        for control, code, n in _blocked(session, gate, heading, col(ReadinessBlocker.code)):
            by_reason[(gate.value, control, code)] = n
    return nonzero(by_tier.items()), nonzero(by_reason.items())


def _stale_evidence(session: Session, *, filters: SystemFilters, now: datetime) -> tuple[int, int]:
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
        .where(within(System.id, filters), col(Evidence.is_current), or_(*stale_conditions))
    ).one()
    return rows, systems


def _pilot_results(
    session: Session, *, filters: SystemFilters
) -> tuple[dict[str, int], dict[str, int]]:
    """Concluded pilots by outcome, and findings by kind."""
    outcomes = session.execute(
        select(col(Pilot.outcome), func.count())
        .where(within(Pilot.system_id, filters), col(Pilot.status) == "concluded")
        .group_by(col(Pilot.outcome))
    ).all()
    # Findings are short JSON lists on results, unnested and counted in the database.
    elements = (
        func.json_array_elements_text
        if session.get_bind().dialect.name == "postgresql"
        else func.json_each
    )
    finding = elements(col(PilotResult.findings)).table_valued("value").alias("finding")
    findings = session.execute(
        select(finding.c.value, func.count())
        .select_from(PilotResult)
        .join(finding, true())
        .join(Pilot, col(Pilot.id) == col(PilotResult.pilot_id))
        .where(within(Pilot.system_id, filters))
        .group_by(finding.c.value)
    ).all()
    return nonzero(tuple(row) for row in outcomes), nonzero(tuple(row) for row in findings)


def _stuck(session: Session, filters: SystemFilters, *, now: datetime) -> int:
    max_pilot_days = policy_service.active_rules(session).rules.max_pilot_days
    stuck: int = session.execute(
        select(func.count())
        .select_from(Pilot)
        .where(
            within(Pilot.system_id, filters),
            stuck_pilot(now, max_pilot_days=max_pilot_days),
        )
    ).scalar_one()
    return stuck
