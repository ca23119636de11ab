from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session, col

from app.auth.roles import Principal
from app.controls.catalogue import CONTROLS_BY_KEY, SYSTEM_FIELD_CONTROLS
from app.errors import NotFound, Unprocessable
from app.events import service as events
from app.events.service import EventType
from app.evidence.schemas import EvidenceRead, EvidenceWrite
from app.models import Evidence, System
from app.policies import service as policy_service
from app.readiness import service as readiness_service
from app.readiness.scoring import ControlStatus, EvidenceFact, EvidenceStatus, control_status


class ControlNotFound(NotFound):
    type = "control-not-found"
    title = "Unknown control"


def check_evidence_control(control: str) -> None:
    if control not in CONTROLS_BY_KEY:
        raise ControlNotFound(f"'{control}' is not a control; GET /v1/controls lists them.")
    if control in SYSTEM_FIELD_CONTROLS:
        raise Unprocessable(
            f"'{control}' is satisfied by the system's own `{control}` field; PATCH the system.",
            errors=[{"field": "control", "message": "set through the system, not evidence"}],
        )


# Built once and run on the session's connection: the write pipelines send most.
_RETIRE_CURRENT = (
    update(Evidence)
    .where(
        col(Evidence.system_id) == bindparam("of_system"),
        col(Evidence.control) == bindparam("of_control"),
        col(Evidence.is_current),
    )
    .values(is_current=False)
    .returning(col(Evidence.version))
)
_ADD_VERSION = insert(Evidence)


def record(
    session: Session,
    *,
    system: System,
    control: str,
    body: EvidenceWrite,
    actor: Principal,
    now: datetime,
    source: str = "api",
) -> Evidence:
    """Record a new current version; the system row must be locked by the caller. The
    returned version is not in the session: it is written at once, outside the ORM."""
    check_evidence_control(control)
    assert system.id is not None
    connection = session.connection()
    # One statement retires the current version and says which it was.
    previous = connection.execute(
        _RETIRE_CURRENT, {"of_system": system.id, "of_control": control}
    ).scalar_one_or_none()
    evidence = Evidence(
        system_id=system.id,
        control=control,
        version=(previous or 0) + 1,
        status=body.status.value,
        summary=body.summary,
        uri=body.uri,
        expires_at=body.expires_at,
        recorded_at=now,
        recorded_by=actor.key_id,
        source=source,
        is_current=True,
    )
    connection.execute(_ADD_VERSION, evidence.model_dump(exclude={"id"}))
    fact = EvidenceFact(body.status, now, body.expires_at, source)
    readiness_service.refresh(session, system, now=now, recorded=(control, fact))
    events.append(
        session,
        type=EventType.evidence_recorded,
        actor=actor,
        now=now,
        system_key=system.key,
        data={
            "control": control,
            "version": evidence.version,
            "status": evidence.status,
            "source": source,
        },
    )
    return evidence


def current(
    session: Session, *, system: System, after_control: str | None, limit: int
) -> list[Evidence]:
    query = (
        select(Evidence)
        .where(col(Evidence.system_id) == system.id, col(Evidence.is_current))
        .order_by(col(Evidence.control))
        .limit(limit + 1)
    )
    if after_control is not None:
        query = query.where(col(Evidence.control) > after_control)
    return list(session.execute(query).scalars())


def history(
    session: Session, *, system: System, control: str, before_version: int | None, limit: int
) -> list[Evidence]:
    if control not in CONTROLS_BY_KEY:
        raise ControlNotFound(f"'{control}' is not a control; GET /v1/controls lists them.")
    query = (
        select(Evidence)
        .where(col(Evidence.system_id) == system.id, col(Evidence.control) == control)
        .order_by(col(Evidence.version).desc())
        .limit(limit + 1)
    )
    if before_version is not None:
        query = query.where(col(Evidence.version) < before_version)
    return list(session.execute(query).scalars())


class EvidenceReader:
    """Renders evidence with its staleness under the active policy, loaded once."""

    def __init__(self, session: Session, system: System, now: datetime) -> None:
        self._system = system
        self._now = now
        self._rules = policy_service.active_rules(session).rules

    def read(self, evidence: Evidence) -> EvidenceRead:
        fact = EvidenceFact(
            EvidenceStatus(evidence.status), evidence.recorded_at, evidence.expires_at
        )
        inputs = readiness_service.Inputs(evidence={evidence.control: fact})
        facts = readiness_service.facts_for(self._system, inputs, self._now)
        stale = control_status(evidence.control, facts, self._rules) is ControlStatus.stale
        return EvidenceRead(
            system_key=self._system.key,
            control=evidence.control,
            version=evidence.version,
            status=EvidenceStatus(evidence.status),
            summary=evidence.summary,
            uri=evidence.uri,
            expires_at=evidence.expires_at,
            recorded_at=evidence.recorded_at,
            recorded_by=evidence.recorded_by,
            source=evidence.source,
            current=evidence.is_current,
            stale=stale,
        )
