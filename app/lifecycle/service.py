"""Gate checks, transitions, approvals and waivers: each in the caller's unit of work."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from app.auth import scope
from app.auth.roles import Principal, Role
from app.errors import (
    Conflict,
    Forbidden,
    GateDenied,
    InvalidTransition,
    NotFound,
    StageConflict,
    Unprocessable,
)
from app.events import service as events
from app.events.service import EventType
from app.lifecycle.schemas import (
    MIN_OVERRIDE_JUSTIFICATION,
    ApprovalCreate,
    ClassificationCreate,
    GateCheckCreate,
    TransitionCreate,
    WaiverCreate,
)
from app.lifecycle.stages import GateStage, InvalidMove, Stage, gate_for, is_release_move
from app.models import (
    Approval,
    ClassificationConfirmation,
    GateCheck,
    System,
    Transition,
    Waiver,
)
from app.models.queries import newest_first
from app.policies import service as policy_service
from app.readiness import service as readiness_service
from app.readiness.scoring import BlockingItem, Evaluation
from app.schemas import Release


def _items(blocking: tuple[BlockingItem, ...]) -> list[dict[str, str | None]]:
    return [
        {"code": item.code.value, "control": item.control, "detail": item.detail}
        for item in blocking
    ]


def _release(release: Release | None) -> dict[str, str | None] | None:
    return release.model_dump() if release else None


@dataclass(frozen=True)
class GateDecision:
    """What a gate check answers, before it is recorded: the gate to `target_stage` judged
    now, and whether the lifecycle allows the move from the system's current stage."""

    target_stage: GateStage
    allowed: bool
    move_valid: bool
    # The system is in the target stage already: a new release entering it.
    release_move: bool
    score: float
    required_score: float
    blocking: tuple[BlockingItem, ...]
    policy_version: int


def judge_gate(
    session: Session,
    *,
    system: System,
    target_stage: GateStage,
    release: Release | None,
    now: datetime,
) -> GateDecision:
    """The decision for a gate now, for `release` if one is named, written nowhere (a dry
    run, or `check_gate`'s first half). The one rule every caller answers by: the API's
    gate checks and transitions, admission reviews and MLflow aliases."""
    evaluation, readiness = readiness_service.evaluate_now(
        session, system, now=now, release=release.version if release else None
    )
    gate = evaluation.gates[target_stage]
    from_stage, to_stage = Stage(system.stage), Stage(target_stage.value)
    try:
        # Some moves have no gate (production -> pilot): then nothing blocks them.
        gated = gate_for(from_stage, to_stage) is not None
        move_valid = True
    except InvalidMove:
        gated, move_valid = True, False
    blocking = gate.blocking if gated else ()
    return GateDecision(
        target_stage=target_stage,
        allowed=move_valid and not blocking,
        move_valid=move_valid,
        release_move=is_release_move(from_stage, to_stage),
        score=evaluation.score,
        required_score=gate.required_score,
        blocking=blocking,
        policy_version=readiness.policy_version,
    )


def record_gate_check(
    session: Session,
    *,
    system: System,
    decision: GateDecision,
    release: Release | None,
    actor: Principal,
    now: datetime,
) -> GateCheck:
    """Record a decision as a gate check, with its `gate.checked` event."""
    assert system.id is not None
    check = GateCheck(
        system_id=system.id,
        target_stage=decision.target_stage.value,
        allowed=decision.allowed,
        score=decision.score,
        required_score=decision.required_score,
        blocking=_items(decision.blocking),
        policy_version=decision.policy_version,
        release_version=release.version if release else None,
        release_uri=release.uri if release else None,
        **actor.columns(),
        checked_at=now,
    )
    session.add(check)
    session.flush()
    events.append(
        session,
        type=EventType.gate_checked,
        actor=actor,
        now=now,
        system_key=system.key,
        data={
            "gate_check_id": check.id,
            "from_stage": system.stage,
            "target_stage": check.target_stage,
            "allowed": check.allowed,
            "move_valid": decision.move_valid,
            "release_move": decision.release_move,
            "score": check.score,
            "blocking": check.blocking,
            "policy_version": check.policy_version,
            "release": _release(release),
        },
    )
    return check


def check_gate(
    session: Session, *, system: System, body: GateCheckCreate, actor: Principal, now: datetime
) -> tuple[GateCheck, GateDecision]:
    """Record the decision for a gate now, and return it with the record."""
    decision = judge_gate(
        session, system=system, target_stage=body.target_stage, release=body.release, now=now
    )
    check = record_gate_check(
        session, system=system, decision=decision, release=body.release, actor=actor, now=now
    )
    return check, decision


@dataclass(frozen=True)
class Moved:
    """A transition asked for, and whether this request recorded it (false: the release
    named was already current in that stage, recorded by this earlier transition)."""

    transition: Transition
    recorded: bool


def _last_transition(session: Session, system: System) -> Transition | None:
    return session.exec(
        select(Transition)
        .where(col(Transition.system_id) == system.id)
        .order_by(col(Transition.id).desc())
        .limit(1)
    ).first()


def transition(
    session: Session, *, system: System, body: TransitionCreate, actor: Principal, now: datetime
) -> Moved:
    """Move a locked system to another stage, or a new release into its stage,
    re-evaluating the gate in this transaction."""
    if body.override is not None:
        if not actor.role.allows(Role.admin):
            raise Forbidden("Only an admin key may override a gate.", required_role="admin")
        if len(body.override.justification.strip()) < MIN_OVERRIDE_JUSTIFICATION:
            raise Unprocessable(
                f"An override needs a justification of at least {MIN_OVERRIDE_JUSTIFICATION}"
                " characters.",
                errors=[{"field": "override.justification", "message": "too short"}],
            )
    from_stage = Stage(system.stage)
    if body.expected_stage is not None and body.expected_stage != from_stage:
        raise StageConflict(
            f"The system is in {from_stage.value}, not {body.expected_stage.value}.",
            current_stage=from_stage.value,
        )
    try:
        gate = gate_for(from_stage, body.to_stage)
    except InvalidMove as exc:
        raise InvalidTransition(str(exc), current_stage=from_stage.value) from exc
    if is_release_move(from_stage, body.to_stage):
        if body.release is None:
            raise InvalidTransition(
                f"The system is in {from_stage.value} already: a transition to its own stage"
                " records a new release, so it names one (`release.version`).",
                current_stage=from_stage.value,
            )
        if body.release.version == system.release_version:
            # Recorded before (a re-run of the same deploy): the same answer, nothing new.
            current = _last_transition(session, system)
            if current is not None:
                return Moved(current, recorded=False)

    # The inputs are loaded once: the gate is judged on them, and the answer stored after
    # the move is evaluated from them too.
    move = readiness_service.StageMove(
        session, system, now=now, release=body.release.version if body.release else None
    )
    evaluation: Evaluation
    evaluation, readiness = move.evaluate()
    blocking = evaluation.gates[gate].blocking if gate else ()
    if blocking and body.override is None:
        result = evaluation.gates[gate] if gate else None
        raise GateDenied(
            f"{from_stage.value} -> {body.to_stage.value} is blocked by {len(blocking)} item(s).",
            blocking=_items(blocking),
            score=evaluation.score,
            required_score=result.required_score if result else None,
            policy_version=readiness.policy_version,
            current_stage=from_stage.value,
        )

    # Only a gate that failed is overridden; an override of a passing move is not one.
    override = body.override if blocking else None
    # Stamped no earlier than the last move, so time order agrees with commit order even
    # when replicas' clocks differ a little.
    last = move.last_moved_at
    now = max(now, last) if last else now

    # The row is locked, so this cannot miss; the version condition keeps the move safe
    # even for a caller that forgot the lock.
    # The release the move names is the one current in the stage from now on (none named:
    # none known).
    values = {
        "stage": body.to_stage.value,
        "release_version": body.release.version if body.release else None,
        "release_uri": body.release.uri if body.release else None,
        "version": system.version + 1,
        "updated_at": now,
    }
    moved = session.execute(
        update(System)
        .where(col(System.id) == system.id, col(System.version) == system.version)
        .values(**values)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise StageConflict("The system moved while this request was deciding; retry.")
    for name, value in values.items():
        set_committed_value(system, name, value)

    assert system.id is not None
    record = Transition(
        system_id=system.id,
        from_stage=from_stage.value,
        to_stage=body.to_stage.value,
        reason=body.reason,
        release_version=body.release.version if body.release else None,
        release_uri=body.release.uri if body.release else None,
        gate=gate.value if gate else None,
        score=evaluation.score,
        policy_version=readiness.policy_version,
        blocking=_items(blocking),
        override_justification=override.justification if override else None,
        **actor.columns(),
        occurred_at=now,
    )
    session.add(record)
    session.flush()
    # The stage is part of the stored answer, and approvals older than this move lapse.
    move.store_moved(at=now)
    events.append(
        session,
        type=EventType.transition_recorded,
        actor=actor,
        now=now,
        system_key=system.key,
        data={
            "transition_id": record.id,
            "from_stage": record.from_stage,
            "to_stage": record.to_stage,
            "reason": record.reason,
            "release": _release(body.release),
            "gate": record.gate,
            "score": record.score,
            "policy_version": record.policy_version,
            "override": override.model_dump() if override else None,
            "overridden": record.blocking,
        },
    )
    return Moved(record, recorded=True)


def list_transitions(
    session: Session, *, system: System, before: int | None, limit: int
) -> list[Transition]:
    return newest_first(session, Transition, system_id=system.id, before=before, limit=limit)


@dataclass(frozen=True)
class ReleasePeriod:
    """A period a release spent in a stage: from the transition that named it to the next
    transition of the system (none: it is there still)."""

    transition: Transition
    left_at: datetime | None


def list_releases(
    session: Session, *, system: System, before: int | None, limit: int
) -> list[ReleasePeriod]:
    """The periods of named releases, newest first, `limit + 1` at most (the extra one says
    there is a next page), before the transition id `before`."""
    later = aliased(Transition)
    left_at = (
        select(col(later.occurred_at))
        .where(
            col(later.system_id) == col(Transition.system_id), col(later.id) > col(Transition.id)
        )
        .order_by(col(later.id))
        .limit(1)
        .correlate(Transition)
        .scalar_subquery()
    )
    query = (
        select(Transition, left_at)
        .where(col(Transition.system_id) == system.id, col(Transition.release_version).is_not(None))
        .order_by(col(Transition.id).desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(col(Transition.id) < before)
    return [ReleasePeriod(row, left) for row, left in session.execute(query).all()]


def stage_at(session: Session, *, system: System, at: datetime) -> tuple[str, Transition | None]:
    """The stage the system was in at `at`, and the transition that put it there."""
    if at < system.created_at:
        raise NotFound(f"System '{system.key}' was registered after {at.isoformat()}.")
    last = session.exec(
        select(Transition)
        .where(col(Transition.system_id) == system.id, col(Transition.occurred_at) <= at)
        .order_by(col(Transition.id).desc())
        .limit(1)
    ).first()
    return (last.to_stage if last else Stage.proposed.value), last


def _ensure_independent(session: Session, system: System, actor: Principal) -> None:
    """A person's decision on the system's tier (an approval, a confirmation of the tier):
    where the tier's policy asks for independence, not from an approver of the owner team."""
    scope.ensure_independent(
        actor,
        owner_team=system.owner_team,
        tier=system.risk_tier,
        rules=policy_service.active_rules(session).rules,
    )


def record_approval(
    session: Session, *, system: System, body: ApprovalCreate, actor: Principal, now: datetime
) -> Approval:
    """Approvals are not team-scoped (independence needs outsiders), but a tier whose policy
    asks for independent approval refuses an approver scoped to the owner team."""
    _ensure_independent(session, system, actor)
    assert system.id is not None
    approval = Approval(
        system_id=system.id,
        target_stage=body.target_stage.value,
        decision=body.decision.value,
        comment=body.comment,
        **actor.columns("approver"),
        approver_teams=sorted(actor.teams) if actor.teams is not None else None,
        created_at=now,
    )
    session.add(approval)
    session.flush()
    readiness_service.refresh(session, system, now=now)
    events.append(
        session,
        type=EventType.approval_recorded,
        actor=actor,
        now=now,
        system_key=system.key,
        data={
            "approval_id": approval.id,
            "target_stage": approval.target_stage,
            "decision": approval.decision,
            "comment": approval.comment,
        },
    )
    return approval


class TierMismatch(Conflict):
    type = "tier-mismatch"
    title = "The tier confirmed is not the system's current tier"


def confirm_classification(
    session: Session,
    *,
    system: System,
    body: ClassificationCreate,
    actor: Principal,
    now: datetime,
) -> ClassificationConfirmation:
    """A person confirms the system's current risk tier, under the independence rule of
    approvals: the confirmation holds until the tier changes."""
    if body.tier.value != system.risk_tier:
        raise TierMismatch(
            f"'{system.key}' is {system.risk_tier} tier now, not {body.tier.value}; confirm the"
            " tier it has, or change what it touches first.",
            current_tier=system.risk_tier,
        )
    _ensure_independent(session, system, actor)
    assert system.id is not None
    confirmation = ClassificationConfirmation(
        system_id=system.id,
        tier=system.risk_tier,
        comment=body.comment,
        **actor.columns("confirmed_by"),
        confirmed_by_teams=sorted(actor.teams) if actor.teams is not None else None,
        confirmed_at=now,
    )
    session.add(confirmation)
    session.flush()
    system.classification_confirmed_tier = system.risk_tier
    system.classification_confirmation_id = confirmation.id
    system.version += 1
    system.updated_at = now
    session.add(system)
    readiness_service.refresh(session, system, now=now)
    events.append(
        session,
        type=EventType.system_classification_confirmed,
        actor=actor,
        now=now,
        system_key=system.key,
        data={
            "confirmation_id": confirmation.id,
            "tier": confirmation.tier,
            "comment": confirmation.comment,
        },
    )
    return confirmation


def list_approvals(
    session: Session, *, system: System, before: int | None, limit: int
) -> list[Approval]:
    return newest_first(session, Approval, system_id=system.id, before=before, limit=limit)


class ControlNotWaivable(Unprocessable):
    type = "control-not-waivable"
    title = "This control cannot be waived at this tier"


def grant_waiver(
    session: Session, *, system: System, body: WaiverCreate, actor: Principal, now: datetime
) -> Waiver:
    rules = policy_service.active_rules(session).rules
    scope.ensure_may_attest(actor, control=body.control.value, rules=rules)
    if body.control in rules.tier(system.risk_tier).non_waivable:
        raise ControlNotWaivable(
            f"The policy does not let {body.control.value} be waived at {system.risk_tier} tier.",
            errors=[{"field": "control", "message": "not waivable at this tier"}],
        )
    longest = timedelta(days=rules.max_waiver_days)
    if not now < body.expires_at <= now + longest:
        raise Unprocessable(
            f"expires_at must be in the future and at most {rules.max_waiver_days} days ahead.",
            errors=[{"field": "expires_at", "message": "outside the allowed window"}],
        )
    assert system.id is not None
    waiver = Waiver(
        system_id=system.id,
        control=body.control.value,
        justification=body.justification,
        expires_at=body.expires_at,
        **actor.columns("granted_by"),
        granted_at=now,
    )
    session.add(waiver)
    session.flush()
    readiness_service.refresh(session, system, now=now)
    events.append(
        session,
        type=EventType.waiver_granted,
        actor=actor,
        now=now,
        system_key=system.key,
        data={
            "waiver_id": waiver.id,
            "control": waiver.control,
            "justification": waiver.justification,
            "expires_at": waiver.expires_at.isoformat(),
        },
    )
    return waiver


def revoke_waiver(
    session: Session, *, system: System, waiver_id: int, actor: Principal, now: datetime
) -> None:
    waiver = session.get(Waiver, waiver_id)
    if waiver is None or waiver.system_id != system.id:
        raise NotFound(f"No waiver {waiver_id} for system '{system.key}'.")
    if waiver.revoked_at is not None:
        return
    waiver.revoked_at = now
    for column, value in actor.columns("revoked_by").items():
        setattr(waiver, column, value)
    session.add(waiver)
    session.flush()
    readiness_service.refresh(session, system, now=now)
    events.append(
        session,
        type=EventType.waiver_revoked,
        actor=actor,
        now=now,
        system_key=system.key,
        data={"waiver_id": waiver.id, "control": waiver.control},
    )


def list_waivers(
    session: Session, *, system: System, before: int | None, limit: int
) -> list[Waiver]:
    return newest_first(session, Waiver, system_id=system.id, before=before, limit=limit)
