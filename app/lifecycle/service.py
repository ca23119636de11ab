"""Gate checks, transitions, approvals and waivers: each in the caller's unit of work."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from app.auth import scope
from app.auth.roles import Principal, Role
from app.errors import (
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
    GateCheckCreate,
    Release,
    TransitionCreate,
    WaiverCreate,
)
from app.lifecycle.stages import GateStage, InvalidMove, Stage, gate_for
from app.models import Approval, GateCheck, System, Transition, Waiver
from app.models.queries import newest_first
from app.policies import service as policy_service
from app.readiness import service as readiness_service
from app.readiness.scoring import BlockingItem, Evaluation


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
    score: float
    required_score: float
    blocking: tuple[BlockingItem, ...]
    policy_version: int


def judge_gate(
    session: Session, *, system: System, target_stage: GateStage, now: datetime
) -> GateDecision:
    """The decision for a gate now, written nowhere (a dry run, or `check_gate`'s first
    half)."""
    evaluation, readiness = readiness_service.evaluate_now(session, system, now=now)
    gate = evaluation.gates[target_stage]
    try:
        # Some moves have no gate (production -> pilot): then nothing blocks them.
        gated = gate_for(Stage(system.stage), Stage(target_stage.value)) is not None
        move_valid = True
    except InvalidMove:
        gated, move_valid = True, False
    blocking = gate.blocking if gated else ()
    return GateDecision(
        target_stage=target_stage,
        allowed=move_valid and not blocking,
        move_valid=move_valid,
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
            "score": check.score,
            "blocking": check.blocking,
            "policy_version": check.policy_version,
            "release": _release(release),
        },
    )
    return check


def check_gate(
    session: Session, *, system: System, body: GateCheckCreate, actor: Principal, now: datetime
) -> tuple[GateCheck, bool]:
    """Record the decision for a gate now; also says whether the lifecycle allows the move."""
    decision = judge_gate(session, system=system, target_stage=body.target_stage, now=now)
    check = record_gate_check(
        session, system=system, decision=decision, release=body.release, actor=actor, now=now
    )
    return check, decision.move_valid


def transition(
    session: Session, *, system: System, body: TransitionCreate, actor: Principal, now: datetime
) -> Transition:
    """Move a locked system to another stage, re-evaluating its gate in this transaction."""
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

    # The inputs are loaded once: the gate is judged on them, and the answer stored after
    # the move is evaluated from them too.
    move = readiness_service.StageMove(session, system, now=now)
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
    moved = session.execute(
        update(System)
        .where(col(System.id) == system.id, col(System.version) == system.version)
        .values(stage=body.to_stage.value, version=system.version + 1, updated_at=now)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise StageConflict("The system moved while this request was deciding; retry.")
    set_committed_value(system, "stage", body.to_stage.value)
    set_committed_value(system, "version", system.version + 1)
    set_committed_value(system, "updated_at", now)

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
    return record


def list_transitions(
    session: Session, *, system: System, before: int | None, limit: int
) -> list[Transition]:
    return newest_first(session, Transition, system_id=system.id, before=before, limit=limit)


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


def record_approval(
    session: Session, *, system: System, body: ApprovalCreate, actor: Principal, now: datetime
) -> Approval:
    """Approvals are not team-scoped (independence needs outsiders), but a tier whose policy
    asks for independent approval refuses an approver scoped to the owner team."""
    scope.ensure_independent(
        actor,
        owner_team=system.owner_team,
        tier=system.risk_tier,
        rules=policy_service.active_rules(session).rules,
    )
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
