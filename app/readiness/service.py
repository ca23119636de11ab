"""Evaluates readiness from the inputs `app.readiness.inputs` loads, and stores the answer."""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from app.errors import NotFound
from app.models import Policy, ReadinessBlocker, ReadinessSnapshot, System
from app.models.queries import newest_first
from app.policies import service as policy_service
from app.policies.service import ActiveRules
from app.readiness import marker, rules_version
from app.readiness.inputs import Inputs, facts_for, granted_by_key, load_inputs
from app.readiness.schemas import (
    ReadinessRead,
)
from app.readiness.scoring import Evaluation, EvidenceFact, GateResult, evaluate
from app.vocabulary import GateStage

REEVALUATE_BATCH = 500


# Built once and run on the session's connection: every write stores readiness.
# SET takes the columns its parameters name, and the marker of the store.
_STORE_READINESS = (
    update(System)
    .where(col(System.id) == bindparam("of_system"))
    .values(readiness_seq=marker.StoreMarker())
)
_CLEAR_BLOCKERS = delete(ReadinessBlocker).where(
    col(ReadinessBlocker.system_id) == bindparam("system_id")
)
_ADD_BLOCKERS = insert(ReadinessBlocker)
_ADD_SNAPSHOT = insert(ReadinessSnapshot)


def render(
    system: System, evaluation: Evaluation, *, policy_version: int, now: datetime
) -> ReadinessRead:
    # Plain data validated in one call: building the nested models one by one took
    # longer, and every write renders an answer.
    def gate(stage: GateStage) -> dict[str, Any]:
        result = evaluation.gates[stage]
        return {
            "ready": result.ready,
            "required_score": result.required_score,
            "blocking": [
                {"code": item.code, "control": item.control, "detail": item.detail}
                for item in result.blocking
            ],
        }

    return ReadinessRead.model_validate(
        {
            "system_key": system.key,
            "stage": system.stage,
            "risk_tier": evaluation.tier,
            "risk_tier_rule": system.risk_tier_rule,
            "score": evaluation.score,
            "level": evaluation.level,
            "policy_version": policy_version,
            "rules_version": rules_version.RULES_VERSION,
            "release": evaluation.release,
            "current_release": (
                {"version": system.release_version, "uri": system.release_uri}
                if system.release_version is not None
                else None
            ),
            "evaluated_at": now,
            "valid_until": evaluation.valid_until,
            "controls": [
                {
                    "control": result.control,
                    "status": result.status,
                    "points": result.points,
                    "weight": result.weight,
                    "required_for": result.required_for,
                }
                for result in evaluation.controls
            ],
            "gates": {"pilot": gate(GateStage.pilot), "production": gate(GateStage.production)},
            "open_findings": [
                {"finding": item.finding, "control": item.control, "pilot_id": item.pilot_id}
                for item in evaluation.open_findings
            ],
        }
    )


def _summary(evaluation: Evaluation) -> dict[str, Any]:
    """The columns a stored answer and a history snapshot share."""
    return {
        "score": evaluation.score,
        "level": evaluation.level.value,
        "pilot_ready": evaluation.gates[GateStage.pilot].ready,
        "production_ready": evaluation.gates[GateStage.production].ready,
    }


def _snapshot(system_id: int, evaluation: Evaluation, readiness: ReadinessRead) -> dict[str, Any]:
    return {
        "system_id": system_id,
        **_summary(evaluation),
        "policy_version": readiness.policy_version,
        "rules_version": readiness.rules_version,
        "recorded_at": readiness.evaluated_at,
    }


Answer = tuple[System, Evaluation, ReadinessRead]


def _store(session: Session, answers: list[Answer], snapshots: list[dict[str, Any]]) -> None:
    """Stores each system's answer and appends the history snapshots, a statement each for
    all of them."""
    stored_rows = []
    blockers: list[dict[str, Any]] = []
    for system, evaluation, readiness in answers:
        assert system.id is not None
        stored = {
            **_summary(evaluation),
            "readiness_document": readiness.model_dump_json(),
            "readiness_policy_version": readiness.policy_version,
            "readiness_rules_version": readiness.rules_version,
            "readiness_valid_until": evaluation.valid_until,
        }
        stored_rows.append({"of_system": system.id, **stored})
        # Written now, on the connection; other changes the caller made to the system are
        # written by the ORM at flush, to other columns. The object is told the stored
        # values as its loaded state, so the ORM neither writes them again nor reads them
        # back.
        for name, value in stored.items():
            set_committed_value(system, name, value)
        session.expire(system, ["readiness_seq"])  # the database's own value, read if asked
        blockers.extend(
            {
                "system_id": system.id,
                "gate": gate.value,
                "code": item.code.value,
                "control": item.control,
            }
            for gate, result in evaluation.gates.items()
            for item in result.blocking
        )
    connection = session.connection()
    connection.execute(_STORE_READINESS, stored_rows)
    connection.execute(_CLEAR_BLOCKERS, [{"system_id": row["of_system"]} for row in stored_rows])
    if blockers:
        # One executemany: ORM objects would each be inserted on their own to fetch ids
        # nobody reads.
        connection.execute(_ADD_BLOCKERS, blockers)
    connection.execute(_ADD_SNAPSHOT, snapshots)


def _evaluate(
    system: System, inputs: Inputs, policy: ActiveRules, now: datetime
) -> tuple[Evaluation, ReadinessRead]:
    evaluation = evaluate(facts_for(system, inputs, now), policy.rules)
    return evaluation, render(system, evaluation, policy_version=policy.version, now=now)


def refresh(session: Session, system: System, *, now: datetime) -> ReadinessRead:
    """Re-evaluate after an input changed; store the answer and a history snapshot."""
    assert system.id is not None
    policy = policy_service.active_rules(session)
    inputs = load_inputs(session, [system], policy, now)[system.id]
    return _refresh(session, system, inputs, policy, now)


def _refresh(
    session: Session, system: System, inputs: Inputs, policy: ActiveRules, now: datetime
) -> ReadinessRead:
    assert system.id is not None
    evaluation, readiness = _evaluate(system, inputs, policy, now)
    snapshot = _snapshot(system.id, evaluation, readiness)
    _store(session, [(system, evaluation, readiness)], [snapshot])
    return readiness


class StageMove:
    """Readiness around one system's stage change, on inputs loaded once: the gate is
    judged before the move and the answer stored after it, from the same inputs. A move
    changes no input but the time of the last transition (`Inputs.moved`); the stage
    itself is read from the system row."""

    def __init__(
        self, session: Session, system: System, *, now: datetime, release: str | None = None
    ) -> None:
        assert system.id is not None
        self._session = session
        self._system = system
        self._now = now
        self._policy = policy_service.active_rules(session)
        self._inputs = load_inputs(session, [system], self._policy, now, release=release)[system.id]

    @property
    def last_moved_at(self) -> datetime | None:
        """When the system last moved before this move, if ever."""
        return self._inputs.moved_at

    def evaluate(self) -> tuple[Evaluation, ReadinessRead]:
        """A fresh evaluation of the system as it stands, for the release moving if one is
        named, not stored: what the gate decides on, as `evaluate_now` would answer."""
        return _evaluate(self._system, self._inputs, self._policy, self._now)

    def store_moved(self, *, at: datetime) -> ReadinessRead:
        """Store the answer and a history snapshot once the system row has its new stage,
        moved at `at` (no earlier than this object's `now`): what `refresh` at `at` would
        store, without loading the inputs again. Stored answers are judged without a
        release, as every other write stores them."""
        inputs = self._inputs.moved(
            at=at, approval_validity_days=self._policy.rules.approval_validity_days
        )
        inputs = replace(inputs, release=None, release_evidence={})
        return _refresh(self._session, self._system, inputs, self._policy, at)


class EvidenceRefresh:
    """Re-evaluates readiness after each of a run of evidence writes, in order, as if each
    had been written on its own: a history snapshot after each, and each system's last
    answer stored.

    Made before the writes, because it reads the inputs as they stood then and lays each
    write over them in turn: read after the writes, every evaluation but the last would
    already count the writes that come after it.
    """

    def __init__(self, session: Session, systems: list[System], *, now: datetime) -> None:
        self._session = session
        self._now = now
        self._policy = policy_service.active_rules(session)
        self._inputs = load_inputs(session, systems, self._policy, now)

    def store(self, recorded: list[tuple[System, str, EvidenceFact]]) -> None:
        answers: dict[int, Answer] = {}
        snapshots = []
        for system, control, fact in recorded:
            assert system.id is not None
            inputs = self._inputs[system.id]
            inputs.evidence[control] = fact
            evaluation, readiness = _evaluate(system, inputs, self._policy, self._now)
            snapshots.append(_snapshot(system.id, evaluation, readiness))
            answers[system.id] = (system, evaluation, readiness)
        _store(self._session, list(answers.values()), snapshots)


def reevaluate_all(session: Session, *, policy: Policy, now: datetime) -> None:
    """Re-evaluate and store every system under `policy`, in this unit of work."""
    active = ActiveRules(version=policy.version, rules=policy_service.rules_of(policy))
    done = reevaluate_batch(session, after=0, now=now, policy=active)
    while done:
        done = reevaluate_batch(session, after=done[-1], now=now, policy=active)


def reevaluate_batch(
    session: Session,
    *,
    after: int,
    now: datetime,
    policy: ActiveRules | None = None,
    only_other_rules: bool = False,
    size: int = REEVALUATE_BATCH,
) -> list[int]:
    """Re-evaluate and store the next `size` systems by id after `after` (only those whose
    answer is of other rules, if asked), under the active policy unless one is given.
    Returns their ids in order: none once there are none left."""
    active = policy or policy_service.active_rules(session)
    query = select(System).where(col(System.id) > after)
    if only_other_rules:
        query = query.where(other_rules())
    # Writers to these systems wait, so none stores an answer this overwrites. Re-evaluating
    # only the stale ones, a system another writer holds is skipped: that writer stores an
    # answer of these rules anyway.
    locked = (
        query.order_by(col(System.id)).limit(size).with_for_update(skip_locked=only_other_rules)
    )
    systems = list(session.execute(locked).scalars())
    if not systems:
        return []
    _evaluate_and_store(session, systems, active, now)
    session.flush()
    return [system.id for system in systems if system.id is not None]


def _evaluate_and_store(
    session: Session, systems: list[System], active: ActiveRules, now: datetime
) -> None:
    """Evaluate these systems from one load of their inputs, and store each answer with a
    history snapshot."""
    inputs = load_inputs(session, systems, active, now)
    answers: list[Answer] = []
    snapshots = []
    for system in systems:
        assert system.id is not None
        evaluation, readiness = _evaluate(system, inputs[system.id], active, now)
        answers.append((system, evaluation, readiness))
        snapshots.append(_snapshot(system.id, evaluation, readiness))
    _store(session, answers, snapshots)


def lock_granted_by_key(session: Session, *, key_id: int, now: datetime) -> list[System]:
    """The systems whose answers may count what a key gave (`inputs.granted_by_key`),
    locked in id order, as every writer of many systems locks them."""
    query = (
        select(System)
        .where(col(System.id).in_(granted_by_key(key_id, now=now)))
        .order_by(col(System.id))
        .with_for_update()
    )
    return list(session.execute(query).scalars())


def store_anew(session: Session, systems: list[System], *, now: datetime) -> None:
    """Re-evaluate and store, with a history snapshot, these systems (locked by the caller)
    once an input of theirs changed outside them (a key's revocation), a batch of inputs
    at a time."""
    active = policy_service.active_rules(session)
    for start in range(0, len(systems), REEVALUATE_BATCH):
        _evaluate_and_store(session, systems[start : start + REEVALUATE_BATCH], active, now)
    session.flush()


@dataclass(frozen=True)
class GateFlip:
    """A gate whose `ready` time alone turned, and the gate as it stands now."""

    gate: GateStage
    now: GateResult


@dataclass(frozen=True)
class TimeChange:
    """A system whose stored answer time made stale, as stored anew."""

    system_key: str
    stage: str
    flips: tuple[GateFlip, ...]


def store_expired_batch(
    session: Session, *, now: datetime, size: int = REEVALUATE_BATCH
) -> list[TimeChange]:
    """Re-evaluate and store, with a history snapshot, up to `size` systems whose stored
    answer time has made stale by `now`, and say which gates that turned. Returns none once
    there are none left.

    Selected in the write transaction, so a system another pass (another worker) stored
    meanwhile is not selected again: its answer holds past `now` by then. On PostgreSQL
    rows another transaction holds are skipped: that pass or write stores them."""
    query = (
        select(System)
        .where(expired(now))
        .order_by(col(System.id))
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    return store_time_changes(session, list(session.execute(query).scalars()), now=now)


def store_time_changes(
    session: Session, systems: list[System], *, now: datetime
) -> list[TimeChange]:
    """Re-evaluate and store, with a history snapshot, these systems (locked by the caller,
    their stored answers stale by `now`), and say which gates time turned: nothing else has
    changed in the transaction yet, so what turned them is time."""
    if not systems:
        return []
    # Read before storing: the store sets the new values on these objects.
    before = {
        system.id: {
            GateStage.pilot: system.pilot_ready,
            GateStage.production: system.production_ready,
        }
        for system in systems
    }
    active = policy_service.active_rules(session)
    inputs = load_inputs(session, systems, active, now)
    answers: list[Answer] = []
    snapshots = []
    changes = []
    for system in systems:
        assert system.id is not None
        evaluation, readiness = _evaluate(system, inputs[system.id], active, now)
        answers.append((system, evaluation, readiness))
        snapshots.append(_snapshot(system.id, evaluation, readiness))
        flips = tuple(
            GateFlip(gate, evaluation.gates[gate])
            for gate in GateStage
            if evaluation.gates[gate].ready != before[system.id][gate]
        )
        changes.append(TimeChange(system.key, system.stage, flips))
    _store(session, answers, snapshots)
    session.flush()
    return changes


def expired(now: datetime) -> ColumnElement[bool]:
    """Systems whose stored answer, of this code's rules, time has made stale by `now`.
    Answers of other rules are left to their re-evaluation (app.readiness.reevaluation):
    what changed them is the rules, not time."""
    return and_(
        col(System.readiness_rules_version) == rules_version.RULES_VERSION,
        col(System.readiness_valid_until) <= now,
    )


def is_expired(system: System, now: datetime) -> bool:
    """`expired` for a loaded system: of this code's rules, and no longer current."""
    evaluated_by = system.readiness_rules_version
    return evaluated_by == rules_version.RULES_VERSION and not is_current(
        system.readiness_valid_until, evaluated_by, now
    )


def any_expired(session: Session, *, now: datetime) -> bool:
    found = session.execute(select(col(System.id)).where(expired(now)).limit(1)).first()
    return found is not None


def count_to_reevaluate(session: Session, *, only_other_rules: bool) -> int:
    """How many systems there are, or how many have an answer of other rules than this
    code's."""
    query = select(func.count()).select_from(System)
    if only_other_rules:
        query = query.where(other_rules())
    count: int = session.execute(query).scalar_one()
    return count


_systems = System.__table__  # type: ignore[attr-defined]
# Built once and run on the connection, bypassing the ORM: the hottest read of the service.
_STORED_READINESS = select(
    _systems.c.id,
    _systems.c.readiness_document,
    _systems.c.readiness_valid_until,
    _systems.c.readiness_rules_version,
).where(_systems.c.key == bindparam("key"))


def is_current(valid_until: datetime | None, evaluated_by: int, now: datetime) -> bool:
    """Whether a stored answer is still true at `now`: evaluated by this code's rules, and
    not yet changed by time."""
    return evaluated_by == rules_version.RULES_VERSION and (
        valid_until is None or valid_until > now
    )


def stored_answer_valid(now: datetime) -> ColumnElement[bool]:
    """Systems whose stored readiness is still true at `now` (`is_current` in SQL): reports
    and metrics read those as stored and evaluate the rest afresh."""
    valid_until = col(System.readiness_valid_until)
    return and_(
        col(System.readiness_rules_version) == rules_version.RULES_VERSION,
        or_(valid_until.is_(None), valid_until > now),
    )


def other_rules() -> ColumnElement[bool]:
    """Systems whose stored answer was evaluated by other rules than this code's."""
    return col(System.readiness_rules_version) != rules_version.RULES_VERSION


@dataclass(frozen=True)
class StoredDocument:
    system_id: int
    document: str | None  # None once the stored answer is stale (time, or other rules)


def stored_document(connection: Connection, system_key: str, *, now: datetime) -> StoredDocument:
    """The system's stored answer as JSON, while it is still true: one indexed row read on
    a bare connection, no ORM session, no evaluation."""
    row = connection.execute(_STORED_READINESS, {"key": system_key}).one_or_none()
    if row is None:
        raise NotFound(f"No system with key '{system_key}'.")
    system_id, document, valid_until, evaluated_by = row
    still_true = is_current(valid_until, evaluated_by, now)
    return StoredDocument(system_id=system_id, document=str(document) if still_true else None)


def fresh_document(
    session: Session, system_id: int, *, now: datetime, release: str | None = None
) -> str:
    """A fresh answer as JSON, for `release` if one is named. A read does not write, so it
    is not stored here: the next write that touches the system stores one."""
    system = session.get(System, system_id)
    assert system is not None
    _, readiness = evaluate_now(session, system, now=now, release=release)
    return readiness.model_dump_json()


@dataclass(frozen=True)
class Summary:
    score: float
    level: str
    pilot_ready: bool
    production_ready: bool


def summary(session: Session, system: System, *, now: datetime) -> Summary:
    """The system's readiness in brief: the stored one while valid, else evaluated now."""
    if is_current(system.readiness_valid_until, system.readiness_rules_version, now):
        return Summary(system.score, system.level, system.pilot_ready, system.production_ready)
    evaluation, _ = evaluate_now(session, system, now=now)
    return Summary(
        evaluation.score,
        evaluation.level.value,
        evaluation.gates[GateStage.pilot].ready,
        evaluation.gates[GateStage.production].ready,
    )


def evaluate_now(
    session: Session, system: System, *, now: datetime, release: str | None = None
) -> tuple[Evaluation, ReadinessRead]:
    """A fresh evaluation, not stored, for `release` if one is named: what gate checks
    decide on (transitions use `StageMove`)."""
    assert system.id is not None
    policy = policy_service.active_rules(session)
    inputs = load_inputs(session, [system], policy, now, release=release)[system.id]
    return _evaluate(system, inputs, policy, now)


def evaluate_many(
    session: Session, systems: list[System], *, now: datetime
) -> list[tuple[Evaluation, ReadinessRead]]:
    """Fresh evaluations of many systems, not stored, in `systems` order: their inputs are
    loaded a batch at a time in a few queries, not a few queries per system."""
    policy = policy_service.active_rules(session)
    evaluated = []
    for first in range(0, len(systems), REEVALUATE_BATCH):
        batch = systems[first : first + REEVALUATE_BATCH]
        inputs = load_inputs(session, batch, policy, now)
        for system in batch:
            assert system.id is not None
            evaluated.append(_evaluate(system, inputs[system.id], policy, now))
    return evaluated


def history(
    session: Session, *, system: System, before: int | None, limit: int
) -> list[ReadinessSnapshot]:
    return newest_first(session, ReadinessSnapshot, system_id=system.id, before=before, limit=limit)
