"""Pilots: created for a system in stage pilot, fed by pipelines, concluded into evidence."""

from datetime import datetime

from sqlmodel import Session, col, select

from app.auth import scope
from app.auth.roles import Principal
from app.errors import Conflict, NotFound
from app.events import service as events
from app.events.service import EventType
from app.evidence import service as evidence_service
from app.evidence.schemas import EvidenceWrite
from app.lifecycle.stages import Stage
from app.models import Evidence, Pilot, PilotResult, System
from app.models.queries import newest_first
from app.pilots.evaluation import Criterion, Evaluation, Op, Outcome, evaluate
from app.pilots.schemas import (
    CriterionRead,
    FindingRead,
    PilotCreate,
    PilotEvaluation,
    PilotRead,
    ResultCreate,
    ResultRead,
)
from app.policies import service as policy_service
from app.readiness import inputs as readiness_inputs
from app.readiness import service as readiness_service
from app.readiness.scoring import EvidenceFact, EvidenceStatus

# Concluding records the outcome as evidence for these controls (docs/domain.md, Pilots).
OUTCOME_EVIDENCE: dict[Outcome, EvidenceStatus] = {
    Outcome.passed: EvidenceStatus.met,
    Outcome.warning: EvidenceStatus.partial,
    Outcome.failed: EvidenceStatus.not_met,
}
PILOT_EVIDENCE_CONTROLS = ("testing_evidence", "measurable_value")


class SystemNotInPilot(Conflict):
    type = "system-not-in-pilot"
    title = "The system is not in stage pilot"


class PilotConcluded(Conflict):
    type = "pilot-concluded"
    title = "The pilot is concluded"


def criteria_of(pilot: Pilot) -> list[Criterion]:
    return [
        Criterion(
            metric=item["metric"],
            op=Op(item["op"]),
            target=item["target"],
            warning=item.get("warning"),
            weight=item.get("weight", 1.0),
            key=item.get("key", False),
        )
        for item in pilot.criteria
    ]


def get_pilot(session: Session, pilot_id: int) -> Pilot:
    pilot = session.get(Pilot, pilot_id)
    if pilot is None:
        raise NotFound(f"No pilot with id {pilot_id}.")
    return pilot


def create_pilot(
    session: Session, *, system: System, body: PilotCreate, actor: Principal, now: datetime
) -> Pilot:
    if system.stage != Stage.pilot.value:
        raise SystemNotInPilot(
            f"Pilots run in stage pilot; '{system.key}' is in {system.stage}.",
            current_stage=system.stage,
        )
    assert system.id is not None
    pilot = Pilot(
        system_id=system.id,
        name=body.name,
        objective=body.objective,
        planned_end=body.planned_end,
        release=body.release,
        criteria=[criterion.model_dump(mode="json") for criterion in body.criteria],
        created_at=now,
        created_by_name=actor.name,
    )
    session.add(pilot)
    session.flush()
    events.append(
        session,
        type=EventType.pilot_created,
        actor=actor,
        now=now,
        system_key=system.key,
        data={
            "pilot_id": pilot.id,
            "name": pilot.name,
            "release": pilot.release,
            "criteria": pilot.criteria,
        },
    )
    return pilot


def _results(session: Session, pilot: Pilot) -> list[PilotResult]:
    return list(
        session.exec(
            select(PilotResult)
            .where(col(PilotResult.pilot_id) == pilot.id)
            .order_by(col(PilotResult.id))
        )
    )


def _latest(results: list[PilotResult]) -> dict[str, float]:
    latest: dict[str, float] = {}
    for result in results:  # oldest first, so the latest value wins
        latest.update(result.metrics)
    return latest


def _unknown(pilot: Pilot, metrics: dict[str, float]) -> list[str]:
    known = {item["metric"] for item in pilot.criteria}
    return sorted(name for name in metrics if name not in known)


def evaluation_of(pilot: Pilot, results: list[PilotResult]) -> tuple[Evaluation, PilotEvaluation]:
    latest = _latest(results)
    criteria = criteria_of(pilot)
    evaluation = evaluate(criteria, latest, concluded=pilot.status == "concluded")
    rendered = PilotEvaluation(
        score=evaluation.score,
        outcome=evaluation.outcome,
        criteria=[
            CriterionRead(
                metric=criterion.metric,
                op=criterion.op,
                target=criterion.target,
                warning=criterion.warning,
                weight=criterion.weight,
                key=criterion.key,
                value=latest.get(criterion.metric),
                result=result,
            )
            for criterion, result in zip(criteria, evaluation.results, strict=True)
        ],
    )
    return evaluation, rendered


def record_result(
    session: Session,
    *,
    pilot: Pilot,
    system: System,
    body: ResultCreate,
    actor: Principal,
    now: datetime,
) -> tuple[PilotResult, PilotEvaluation]:
    """Store a result; the system row must be locked (findings change its readiness)."""
    if pilot.status == "concluded":
        raise PilotConcluded(f"Pilot {pilot.id} is concluded; its results are frozen.")
    assert pilot.id is not None
    result = PilotResult(
        pilot_id=pilot.id,
        metrics=dict(body.metrics),
        sample_size=body.sample_size,
        window_start=body.window_start,
        window_end=body.window_end,
        source=body.source.model_dump(exclude_none=True) if body.source else None,
        findings=[finding.value for finding in body.findings],
        recorded_at=now,
        recorded_by_name=actor.name,
    )
    session.add(result)
    session.flush()
    _, rendered = evaluation_of(pilot, _results(session, pilot))
    pilot.score = rendered.score
    session.add(pilot)
    if body.findings:
        readiness_service.refresh(session, system, now=now)
    events.append(
        session,
        type=EventType.pilot_result_recorded,
        actor=actor,
        now=now,
        system_key=system.key,
        data={
            "pilot_id": pilot.id,
            "result_id": result.id,
            "metrics": result.metrics,
            "findings": result.findings,
            "score": rendered.score,
        },
    )
    return result, rendered


def conclude(
    session: Session, *, pilot: Pilot, system: System, actor: Principal, now: datetime
) -> Pilot:
    """Freeze the pilot and record its outcome as evidence, in the caller's transaction."""
    if pilot.status == "concluded":
        raise PilotConcluded(f"Pilot {pilot.id} is already concluded.")
    # The outcome is evidence the caller records, from results it may have posted itself:
    # the policy's attestation rights apply as to a PUT of that evidence.
    rules = policy_service.active_rules(session).rules
    for control in PILOT_EVIDENCE_CONTROLS:
        scope.ensure_may_attest(actor, control=control, rules=rules)
    pilot.status = "concluded"
    pilot.concluded_at = now
    pilot.concluded_by_name = actor.name
    evaluation, _ = evaluation_of(pilot, _results(session, pilot))
    outcome = evaluation.outcome or Outcome.failed  # nothing measured at all: a failed pilot
    pilot.outcome = outcome.value
    pilot.score = evaluation.score if evaluation.score is not None else 0.0
    session.add(pilot)
    session.flush()
    summary = f"Pilot {pilot.id} '{pilot.name}' concluded: {outcome.value} (score {pilot.score})"
    for control in PILOT_EVIDENCE_CONTROLS:
        evidence_service.record(
            session,
            system=system,
            control=control,
            body=EvidenceWrite(
                status=OUTCOME_EVIDENCE[outcome], summary=summary, release=pilot.release
            ),
            actor=actor,
            now=now,
            source=f"pilot:{pilot.id}",
        )
    events.append(
        session,
        type=EventType.pilot_concluded,
        actor=actor,
        now=now,
        system_key=system.key,
        data={"pilot_id": pilot.id, "outcome": pilot.outcome, "score": pilot.score},
    )
    return pilot


def read(session: Session, pilot: Pilot, *, system_key: str, now: datetime) -> PilotRead:
    results = _results(session, pilot)
    _, rendered = evaluation_of(pilot, results)
    current = {
        control: EvidenceFact(EvidenceStatus(status), recorded_at, source=source)
        for control, status, recorded_at, source in session.execute(
            select(Evidence.control, Evidence.status, Evidence.recorded_at, Evidence.source).where(
                col(Evidence.system_id) == pilot.system_id, col(Evidence.is_current)
            )
        )
    }
    system = session.get(System, pilot.system_id)
    assert system is not None
    findings = [
        FindingRead(
            finding=item.finding,
            control=item.control,
            pilot_id=item.pilot_id,
            result_id=item.result_id,
            recorded_at=item.recorded_at,
            open=readiness_inputs.is_open(item, current, system.owner_updated_at),
        )
        for item in readiness_inputs.recorded_findings(session, [pilot.system_id]).get(
            pilot.system_id, []
        )
        if item.pilot_id == pilot.id
    ]
    unknown = sorted({name for result in results for name in _unknown(pilot, result.metrics)})
    running = pilot.status == "running"
    return PilotRead(
        id=pilot.id or 0,
        system_key=system_key,
        name=pilot.name,
        objective=pilot.objective,
        planned_end=pilot.planned_end,
        release=pilot.release,
        status=pilot.status,
        overdue=running and pilot.planned_end is not None and pilot.planned_end < now,
        outcome=Outcome(pilot.outcome)
        if pilot.outcome
        else rendered.outcome
        if not running
        else None,
        # A concluded pilot's score is the one it was frozen with.
        score=pilot.score if not running else rendered.score,
        criteria=rendered.criteria,
        findings=findings,
        unknown_metrics=unknown,
        created_at=pilot.created_at,
        concluded_at=pilot.concluded_at,
    )


def result_read(pilot: Pilot, result: PilotResult) -> ResultRead:
    return ResultRead(
        id=result.id or 0,
        pilot_id=pilot.id or 0,
        metrics=result.metrics,
        sample_size=result.sample_size,
        window_start=result.window_start,
        window_end=result.window_end,
        source=result.source,
        findings=result.findings,
        unknown_metrics=_unknown(pilot, result.metrics),
        recorded_at=result.recorded_at,
    )


def list_pilots(session: Session, *, system: System, before: int | None, limit: int) -> list[Pilot]:
    return newest_first(session, Pilot, system_id=system.id, before=before, limit=limit)
