"""What pilots contribute to a readiness evaluation, for many systems in a few queries."""

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from app.models import Pilot, PilotResult
from app.models.queries import PerSystemQuery
from app.readiness.scoring import EvidenceFact, FindingFact, PilotFact

# docs/domain.md, Pilots: the control each organisational gap maps to.
FINDING_CONTROL: dict[str, str] = {
    "poor_data": "data_quality",
    "weak_ownership": "owner",
    "unclear_workflow": "workflow",
    "missing_training": "training",
    "no_risk_review": "risk_review",
    "no_measurable_value": "measurable_value",
}


@dataclass(frozen=True)
class RecordedFinding:
    finding: str
    control: str
    pilot_id: int
    result_id: int
    recorded_at: datetime


# Built once and run on the session's connection, like app.lifecycle.facts.
_CONCLUDED_PILOTS = PerSystemQuery(
    lambda of_systems: (
        select(col(Pilot.system_id), col(Pilot.id), col(Pilot.outcome))
        .where(of_systems(col(Pilot.system_id)), col(Pilot.status) == "concluded")
        .order_by(col(Pilot.concluded_at), col(Pilot.id))
    )
)
_RECORDED_FINDINGS = PerSystemQuery(
    lambda of_systems: (
        select(
            col(Pilot.system_id),
            col(PilotResult.pilot_id),
            col(PilotResult.id),
            col(PilotResult.findings),
            col(PilotResult.recorded_at),
        )
        .join(Pilot, col(Pilot.id) == col(PilotResult.pilot_id))
        .where(of_systems(col(Pilot.system_id)))
        .order_by(col(PilotResult.id))
    )
)


def concluded_pilots(session: Session, system_ids: list[int]) -> dict[int, PilotFact]:
    """The latest concluded pilot of each system: the one the pilot rule looks at."""
    rows = _CONCLUDED_PILOTS.rows(session.connection(), system_ids)
    return {
        system_id: PilotFact(pilot_id=pilot_id or 0, outcome=outcome or "fail")
        for system_id, pilot_id, outcome in rows
    }


def recorded_findings(session: Session, system_ids: list[int]) -> dict[int, list[RecordedFinding]]:
    rows = _RECORDED_FINDINGS.rows(session.connection(), system_ids)
    found: dict[int, list[RecordedFinding]] = defaultdict(list)
    for system_id, pilot_id, result_id, findings, recorded_at in rows:
        for finding in findings:
            found[system_id].append(
                RecordedFinding(
                    finding, FINDING_CONTROL[finding], pilot_id, result_id or 0, recorded_at
                )
            )
    return found


def is_open(
    finding: RecordedFinding,
    evidence: Mapping[str, EvidenceFact],
    owner_updated_at: datetime | None,
) -> bool:
    """Open until its control is updated after it: new evidence, or for the owner a change.

    Evidence the same pilot recorded when it concluded does not count: a pilot that found
    no measurable value cannot clear that finding by its own measurable_value evidence.
    """
    if finding.control == "owner":
        updated = owner_updated_at
    else:
        fact = evidence.get(finding.control)
        own = fact is not None and fact.source == f"pilot:{finding.pilot_id}"
        updated = fact.recorded_at if fact and not own else None
    return updated is None or updated <= finding.recorded_at


def open_findings(
    findings: list[RecordedFinding],
    evidence: Mapping[str, EvidenceFact],
    owner_updated_at: datetime | None,
) -> tuple[FindingFact, ...]:
    return tuple(
        FindingFact(control=item.control, pilot_id=item.pilot_id, finding=item.finding)
        for item in findings
        if is_open(item, evidence, owner_updated_at)
    )
