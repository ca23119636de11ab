"""What a verified MLflow delivery does, in the caller's unit of work: remember its id, and for
an alias mapped to a stage, run that stage's gate for every system linked to the model, then
move them or record the denial. Calling MLflow back is the router's, after the commit."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from app.auth.roles import ActorKind, Principal, Role
from app.events import service as events
from app.events.service import EventType
from app.integrations.mlflow.schemas import AliasCreated, DeliveryOutcome, SystemDecision
from app.lifecycle import service as lifecycle_service
from app.lifecycle.schemas import GateCheckCreate, TransitionCreate
from app.lifecycle.stages import GateStage, Stage, gate_for
from app.models import GateCheck, MlflowAlias, MlflowDelivery, System
from app.readiness.schemas import BlockingItemRead
from app.schemas import Release
from app.systems import service as system_service

# Who the records of a delivery name: the service acting for MLflow, with the pipeline role
# (it may move a system through a gate that passes, never override one) and no team scope
# (a registry serves every team). Approvals it cannot give: a gate that needs them blocks.
MLFLOW = Principal(key_id=None, name="mlflow", role=Role.pipeline, kind=ActorKind.service)

ALIAS_CREATED = ("model_version_alias", "created")
EXTERNAL_REF_PREFIX = "mlflow:models/"
# A delivery passes the signature check only within minutes of being signed, so its id need
# not be kept long to spot a replay; a day leaves room for clocks that disagree.
DELIVERY_RETENTION = timedelta(days=1)

# The id comes back only when this insert took it (rowcount is no help: psycopg reports -1
# for such an insert).
_TAKE = {
    "postgresql": postgresql.insert(MlflowDelivery)
    .on_conflict_do_nothing(index_elements=["delivery_id"])
    .returning(col(MlflowDelivery.delivery_id)),
    "sqlite": sqlite.insert(MlflowDelivery)
    .on_conflict_do_nothing(index_elements=["delivery_id"])
    .returning(col(MlflowDelivery.delivery_id)),
}


def external_ref(model: str) -> str:
    """The `external_ref` that links a system to an MLflow registered model."""
    return f"{EXTERNAL_REF_PREFIX}{model}"


def release(alias: AliasCreated) -> Release:
    return Release(version=alias.version, uri=f"models:/{alias.name}/{alias.version}")


@dataclass
class Received:
    """What a delivery did, for the answer; `verdict` is the `readiness.gate` tag to set on
    the version in MLflow (None: nothing to tell MLflow)."""

    outcome: DeliveryOutcome
    detail: str
    systems: list[SystemDecision] = field(default_factory=list)
    verdict: str | None = None


def gate_check_ids(received: Received) -> str | None:
    """The `readiness.gate_check_id` tag: the gate check behind the verdict (of the systems
    denied, when denied), comma-separated in the rare case of several."""
    denied = received.verdict == DeliveryOutcome.denied.value
    decisions = [one for one in received.systems if not (denied and one.allowed)]
    return ",".join(str(one.gate_check_id) for one in decisions) or None


def blocking_codes(received: Received) -> str:
    """The `readiness.blocking` tag of a denial: each blocking item of the denied systems'
    gate checks as `code:control`, or `code` for one about no control (`approvals_missing`,
    `score_below_threshold`), comma-separated in the gate's order without repeats. A system
    denied with no blocking item was refused by the lifecycle (a retired one whose gate
    passes): `invalid_transition:<its stage>`."""
    codes: list[str] = []
    for one in received.systems:
        if one.allowed:
            continue
        found = [
            f"{item.code}:{item.control}" if item.control else str(item.code)
            for item in one.blocking
        ]
        for code in found or [f"invalid_transition:{one.from_stage.value}"]:
            if code not in codes:
                codes.append(code)
    return ",".join(codes)


def remember(session: Session, alias: AliasCreated, received: Received, *, now: datetime) -> None:
    """Record the decision a delivery made on its alias (nothing when it made none), in its
    unit of work: reconciliation (app.integrations.mlflow.reconcile) gates an alias again
    only when MLflow's differs from it. The linked systems are locked by then, so writers of
    one alias take turns."""
    if received.verdict is None:
        return
    checks = [one.gate_check_id for one in received.systems]
    record = session.get(MlflowAlias, (alias.name, alias.alias))
    if record is None:
        record = MlflowAlias(
            model=alias.name, alias=alias.alias, version="", allowed=False, decided_at=now
        )
    record.version = alias.version
    record.allowed = received.verdict == DeliveryOutcome.allowed.value
    record.gate_check_id = checks[0] if checks else None
    record.decided_at = now
    session.add(record)


def take_delivery(session: Session, delivery_id: str, *, now: datetime) -> bool:
    """Remember a delivery id; False when it was taken before (by any process, committed or
    still committing: on PostgreSQL the insert waits for the other transaction's outcome)."""
    connection = session.connection()
    taken = connection.execute(
        _TAKE[connection.dialect.name], {"delivery_id": delivery_id, "received_at": now}
    ).first()
    connection.execute(
        delete(MlflowDelivery).where(col(MlflowDelivery.received_at) < now - DELIVERY_RETENTION)
    )
    return taken is not None


def linked_systems(session: Session, model: str, *, now: datetime) -> list[System]:
    """The systems linked to the model, their rows locked for a write at `now` (in id order,
    as every writer of several systems locks them; `system_service.locked`)."""
    query = (
        select(System)
        .where(col(System.external_ref) == external_ref(model))
        .order_by(col(System.id))
        .with_for_update()
    )
    return system_service.locked(session, list(session.exec(query)), now=now)


@dataclass(frozen=True)
class _Checked:
    """One linked system's gate check, and what it means for the alias.

    A system before the alias's stage moves through its gate; one in it takes the version
    as a release move, through the same gate; one past it (production, for an alias of
    pilot) stays where it is. Retired systems take nothing: the lifecycle refuses."""

    system: System
    from_stage: Stage
    check: GateCheck
    allowed: bool
    moves: bool
    lifecycle_refuses: bool

    @classmethod
    def of(
        cls,
        system: System,
        target: GateStage,
        check: GateCheck,
        decision: lifecycle_service.GateDecision,
    ) -> "_Checked":
        from_stage = Stage(system.stage)
        # Moves without a gate (back from production to pilot) are not what an alias asks.
        moves = check.allowed and gate_for(from_stage, Stage(target.value)) is not None
        return cls(system, from_stage, check, check.allowed, moves, not decision.move_valid)


def receive(
    session: Session,
    *,
    delivery_id: str,
    entity: str,
    action: str,
    alias: AliasCreated | None,
    stages: Mapping[str, GateStage],
    now: datetime,
) -> Received:
    """Handle one verified delivery (`alias` is its data when it is an alias's creation)."""
    if not take_delivery(session, delivery_id, now=now):
        return Received(DeliveryOutcome.replayed, f"Delivery {delivery_id} was taken before.")
    if (entity, action) != ALIAS_CREATED or alias is None:
        return Received(DeliveryOutcome.ignored, f"{entity}.{action} deliveries are not acted on.")
    target = stages.get(alias.alias)
    if target is None:
        return Received(
            DeliveryOutcome.ignored, f"The alias '{alias.alias}' is mapped to no stage."
        )
    systems = linked_systems(session, alias.name, now=now)
    if not systems:
        return Received(
            DeliveryOutcome.ignored,
            f"No system is linked to {external_ref(alias.name)} (external_ref).",
        )

    the_release = release(alias)
    checked: list[_Checked] = []
    for system in systems:
        check, decision = lifecycle_service.check_gate(
            session,
            system=system,
            body=GateCheckCreate(target_stage=target, release=the_release),
            actor=MLFLOW,
            now=now,
        )
        checked.append(_Checked.of(system, target, check, decision))

    # The alias is the version's stage for every linked system: it stands only if each may
    # take it, and then the ones before that stage move, as `readiness gate --record` would.
    every_one_may = all(one.allowed for one in checked)
    decisions: list[SystemDecision] = []
    notes: list[str] = []
    for one in checked:
        system, from_stage, check = one.system, one.from_stage, one.check
        transition_id = None
        if every_one_may and one.moves:
            moved = lifecycle_service.transition(
                session,
                system=system,
                body=TransitionCreate(
                    to_stage=Stage(target.value),
                    reason=f"MLflow alias '{alias.alias}' set on {alias.name} version"
                    f" {alias.version}",
                    expected_stage=from_stage,
                    release=the_release,
                ),
                actor=MLFLOW,
                now=now,
            )
            transition_id = moved.transition.id
            if not moved.recorded:
                notes.append(f"{system.key} has version {alias.version} in {target.value} already.")
            elif from_stage.value == target.value:
                notes.append(f"{system.key} takes version {alias.version} in {target.value}.")
            else:
                notes.append(f"{system.key} moved from {from_stage.value} to {target.value}.")
        elif every_one_may:
            notes.append(f"{system.key} stays in {from_stage.value}.")
        elif one.allowed:
            notes.append(f"{system.key} may take it, but moves only with the others.")
        else:
            reason = "lifecycle" if one.lifecycle_refuses else "gate"
            notes.append(
                f"{system.key} is {from_stage.value}: the lifecycle allows it no such move."
                if one.lifecycle_refuses
                else f"{system.key} is blocked by {len(check.blocking)} item(s)."
            )
            events.append(
                session,
                type=EventType.mlflow_alias_denied,
                actor=MLFLOW,
                now=now,
                system_key=system.key,
                data={
                    "delivery_id": delivery_id,
                    "model": alias.name,
                    "version": alias.version,
                    "alias": alias.alias,
                    "target_stage": target.value,
                    "current_stage": from_stage.value,
                    "refused_by": reason,
                    "gate_check_id": check.id,
                    "release": the_release.model_dump(),
                    "blocking": check.blocking,
                },
            )
        decisions.append(
            SystemDecision(
                system_key=system.key,
                from_stage=from_stage,
                gate_check_id=check.id or 0,
                allowed=one.allowed,
                blocking=[BlockingItemRead.model_validate(item) for item in check.blocking],
                transition_id=transition_id,
            )
        )
    outcome = DeliveryOutcome.allowed if every_one_may else DeliveryOutcome.denied
    verb = "may" if every_one_may else "may not"
    lead = f"{alias.name} version {alias.version} {verb} be {alias.alias} ({target.value})."
    return Received(outcome, " ".join([lead, *notes]), decisions, verdict=outcome.value)
