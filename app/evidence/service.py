from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlmodel import Session, col

from app.auth import scope
from app.auth.roles import Principal
from app.controls.catalogue import CONTROLS_BY_KEY, SYSTEM_FIELD_CONTROLS
from app.errors import DomainError, Forbidden, NotFound, Unprocessable
from app.events import service as events
from app.events.service import EventType
from app.evidence.schemas import EvidenceRead, EvidenceWrite
from app.models import Evidence, System
from app.policies import service as policy_service
from app.readiness import service as readiness_service
from app.readiness.scoring import EvidenceFact, EvidenceStatus, is_stale
from app.readiness.tiers import Tier
from app.systems import service as system_service


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
        # The plain IN lets SQLite search the index of current versions by system; with
        # the pairs alone it scanned every system's.
        col(Evidence.system_id).in_(bindparam("system_ids", expanding=True)),
        tuple_(col(Evidence.system_id), col(Evidence.control)).in_(
            bindparam("pairs", expanding=True)
        ),
        col(Evidence.is_current),
    )
    .values(is_current=False)
    .returning(col(Evidence.system_id), col(Evidence.control), col(Evidence.version))
)
_ADD_VERSIONS = insert(Evidence)


@dataclass(frozen=True)
class NewEvidence:
    """One evidence version to record: what a PUT of evidence asks for."""

    system_key: str
    control: str
    body: EvidenceWrite
    actor: Principal
    now: datetime


class EvidenceVersion(Protocol):
    """What reading a version takes: a stored `Evidence` row, or a `NewVersion`."""

    @property
    def control(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def summary(self) -> str | None: ...
    @property
    def uri(self) -> str | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def recorded_by(self) -> int | None: ...
    @property
    def source(self) -> str: ...
    @property
    def release(self) -> str | None: ...
    @property
    def is_current(self) -> bool: ...


class NewVersion(NamedTuple):
    """A version as written: the `evidence` columns, without building an ORM object (that
    cost more than writing the row)."""

    system_id: int
    control: str
    version: int
    status: str
    summary: str | None
    uri: str | None
    expires_at: datetime | None
    recorded_at: datetime
    recorded_by: int | None
    source: str
    release: str | None
    is_current: bool


def _id_of(system: System) -> int:
    assert system.id is not None  # a stored system
    return system.id


class _Recording(NamedTuple):
    system: System
    control: str
    body: EvidenceWrite
    actor: Principal


def _record_versions(
    session: Session, recorded: list[_Recording], *, now: datetime, source: str
) -> list[NewVersion]:
    """Adds each as the new current version of its control, in order, re-evaluates
    readiness after each, and appends an event for each; the systems must be locked by the
    caller. The versions are written at once, outside the ORM, and are not in the session.
    """
    # Before anything is written: it reads the inputs as they stand.
    refresh = readiness_service.EvidenceRefresh(
        session, list({_id_of(system): system for system, _, _, _ in recorded}.values()), now=now
    )
    connection = session.connection()
    # One statement retires the current version of every control written to and says
    # which version each was.
    pairs = {(_id_of(system), control) for system, control, _, _ in recorded}
    latest = {
        (system_id, control): version
        for system_id, control, version in connection.execute(
            _RETIRE_CURRENT,
            {"system_ids": sorted({system_id for system_id, _ in pairs}), "pairs": sorted(pairs)},
        )
    }
    # A control written twice in one batch: only its last version stays current.
    last_of_pair = {
        (_id_of(system), control): index for index, (system, control, _, _) in enumerate(recorded)
    }
    versions = []
    for index, (system, control, body, by) in enumerate(recorded):
        pair = (_id_of(system), control)
        latest[pair] = version = latest.get(pair, 0) + 1
        versions.append(
            NewVersion(
                system_id=pair[0],
                control=control,
                version=version,
                status=body.status.value,
                summary=body.summary,
                uri=body.uri,
                expires_at=body.expires_at,
                recorded_at=now,
                recorded_by=by.key_id,
                source=source,
                release=body.release,
                is_current=last_of_pair[pair] == index,
            )
        )
    connection.execute(_ADD_VERSIONS, [version._asdict() for version in versions])
    refresh.store(
        [
            (
                system,
                control,
                EvidenceFact(body.status, now, body.expires_at, source, body.release),
            )
            for system, control, body, _ in recorded
        ]
    )
    events.append_many(
        session,
        [
            events.NewEvent(
                type=EventType.evidence_recorded,
                actor=by,
                occurred_at=now,
                system_key=system.key,
                data={
                    "control": evidence.control,
                    "version": evidence.version,
                    "status": evidence.status,
                    "source": source,
                    "release": evidence.release,
                },
            )
            for (system, _, _, by), evidence in zip(recorded, versions, strict=True)
        ],
    )
    return versions


def record(
    session: Session,
    *,
    system: System,
    control: str,
    body: EvidenceWrite,
    actor: Principal,
    now: datetime,
    source: str = "api",
) -> NewVersion:
    """Record a new current version; the system row must be locked by the caller. The
    returned version is not in the session: it is written at once, outside the ORM."""
    check_evidence_control(control)
    recording = _Recording(system, control, body, actor)
    return _record_versions(session, [recording], now=now, source=source)[0]


def _refusal(session: Session, write: NewEvidence, system: System | None) -> DomainError | None:
    """Why the write may not happen, if it may not: no such system (404), a system of a team
    the writer does not act for, or a control the policy lets only a higher role attest
    (403)."""
    if system is None:
        return system_service.no_such_system(write.system_key)
    try:
        scope.ensure_acts_for(write.actor, system_key=system.key, owner_team=system.owner_team)
        rules = policy_service.active_rules(session).rules
        scope.ensure_may_attest(write.actor, control=write.control, rules=rules)
    except Forbidden as refused:
        return refused
    return None


def record_many(session: Session, writes: list[NewEvidence]) -> list[EvidenceRead | DomainError]:
    """Records each write as `record` would, one after another, in the caller's
    transaction: the new version for each write that may happen, and for the others the
    error their request answers with (`_refusal`), which leaves nothing of it written.

    The writes share one time, the latest they were sent at: they commit together.
    """
    now = max(write.now for write in writes)
    systems = system_service.lock_systems(session, {write.system_key for write in writes}, now=now)
    refused = {
        index: error
        for index, write in enumerate(writes)
        if (error := _refusal(session, write, systems.get(write.system_key))) is not None
    }
    known = [write for index, write in enumerate(writes) if index not in refused]
    versions = iter(
        _record_versions(
            session,
            [
                _Recording(systems[write.system_key], write.control, write.body, write.actor)
                for write in known
            ],
            now=now,
            source="api",
        )
        if known
        else []
    )
    readers: dict[str, EvidenceReader] = {}
    outcomes: list[EvidenceRead | DomainError] = []
    for index, write in enumerate(writes):
        if index in refused:
            outcomes.append(refused[index])
            continue
        system = systems[write.system_key]
        reader = readers.get(write.system_key)
        if reader is None:
            reader = readers[write.system_key] = EvidenceReader(session, system, now)
        # Answered as of its own write, when it was the current version, as it would be
        # had it been written alone: a later write of the batch may have replaced it.
        outcomes.append(reader.read(next(versions)._replace(is_current=True)))
    return outcomes


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
        self._tier = Tier(system.risk_tier)
        self._now = now
        self._rules = policy_service.active_rules(session).rules

    def read(self, evidence: EvidenceVersion) -> EvidenceRead:
        fact = EvidenceFact(
            EvidenceStatus(evidence.status), evidence.recorded_at, evidence.expires_at
        )
        stale = is_stale(fact, self._tier, self._rules, self._now)
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
            release=evidence.release,
            current=evidence.is_current,
            stale=stale,
        )
