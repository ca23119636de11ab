from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.auth import scope
from app.auth.roles import Principal
from app.errors import (
    AlreadyExists,
    ExternalRefTaken,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from app.events import service as events
from app.events.service import EventType
from app.models import System, SystemLabel
from app.policies import service as policy_service
from app.readiness import expiry
from app.readiness import service as readiness_service
from app.readiness.tiers import Tier, derive_tier
from app.systems.schemas import MAX_LABELS, SystemCreate, SystemPatch

Narrowed = TypeVar("Narrowed", bound=Select[Any])

# Fields a merge patch may name that map one-to-one onto a column.
_PLAIN_FIELDS = ("name", "description", "purpose", "scope", "oversight", "external_ref")
_REQUIRED_FIELDS = frozenset({"name", "impact_areas", "oversight"})


def etag(system: System) -> str:
    return f'"{system.version}"'


# Built once: nearly every request looks its system up, and building the statement cost
# more than running it.
_SYSTEM_BY_KEY = select(System).where(col(System.key) == bindparam("key"))
# Writers to one system queue here (PostgreSQL); SQLite has one writer anyway.
_SYSTEM_BY_KEY_FOR_UPDATE = _SYSTEM_BY_KEY.with_for_update()


# Locked in id order, so two writers of overlapping sets cannot deadlock (PostgreSQL; SQLite
# has one writer anyway).
_SYSTEMS_BY_KEYS_FOR_UPDATE = (
    select(System)
    .where(col(System.key).in_(bindparam("keys", expanding=True)))
    .order_by(col(System.id))
    .with_for_update()
)


def no_such_system(key: str) -> NotFound:
    return NotFound(f"No system with key '{key}'.")


def get_system(session: Session, key: str) -> System:
    system = session.exec(_SYSTEM_BY_KEY, params={"key": key}).one_or_none()
    if system is None:
        raise no_such_system(key)
    return system


def lock_system(session: Session, key: str, *, now: datetime) -> System:
    """The system, its row locked for a write at `now` (404 when there is none), with what
    time changed of its stored answer told first (`locked`)."""
    system = session.exec(_SYSTEM_BY_KEY_FOR_UPDATE, params={"key": key}).one_or_none()
    if system is None:
        raise no_such_system(key)
    return locked(session, [system], now=now)[0]


def lock_for_write(session: Session, key: str, *, actor: Principal, now: datetime) -> System:
    """`lock_system` for a write by `actor`: 403 out-of-scope when the system belongs to a
    team the actor does not act for."""
    system = session.exec(_SYSTEM_BY_KEY_FOR_UPDATE, params={"key": key}).one_or_none()
    if system is None:
        raise no_such_system(key)
    scope.ensure_acts_for(actor, system_key=system.key, owner_team=system.owner_team)
    return locked(session, [system], now=now)[0]


def locked(session: Session, systems: list[System], *, now: datetime) -> list[System]:
    """Systems whose rows the caller has just locked for a write at `now`. Every write
    locks its systems before it changes anything, so this is where a gate that time turned
    since the last scheduler pass is stored and told (`expiry.tell_time`): the write's own
    re-evaluation would otherwise swallow the change."""
    expiry.tell_time(session, systems, now=now)
    return systems


def lock_systems(session: Session, keys: set[str], *, now: datetime) -> dict[str, System]:
    """The systems with these keys, locked for a write at `now` (`locked`), by key; unknown
    keys are left out."""
    if len(keys) == 1:
        # The statement for one key: an expanding IN is rewritten on every run.
        found = session.exec(_SYSTEM_BY_KEY_FOR_UPDATE, params={"key": next(iter(keys))})
    else:
        found = session.exec(_SYSTEMS_BY_KEYS_FOR_UPDATE, params={"keys": sorted(keys)})
    return {system.key: system for system in locked(session, list(found), now=now)}


def _apply_tier(system: System) -> None:
    decision = derive_tier(system.impact_areas, system.oversight, system.declared_risk_tier)
    system.risk_tier = decision.tier.value
    system.risk_tier_rule = {"rule": decision.rule.value, "detail": decision.detail}


def _replace_labels(session: Session, system: System) -> None:
    assert system.id is not None
    session.execute(delete(SystemLabel).where(col(SystemLabel.system_id) == system.id))
    session.add_all(
        SystemLabel(system_id=system.id, name=name, value=value)
        for name, value in system.labels.items()
    )


def external_ref_taken(external_ref: str) -> ExternalRefTaken:
    return ExternalRefTaken(
        f"Another system has the external_ref '{external_ref}'.", external_ref=external_ref
    )


def _ensure_external_ref_free(
    session: Session, external_ref: str | None, *, system_id: int | None = None
) -> None:
    """409 when a system other than `system_id` has this external_ref. The unique index
    refuses it anyway; this says so before the write, and `_unique_violation` tells the two
    indexes apart when a concurrent write got there between this look and the insert."""
    if external_ref is None:
        return
    query = select(col(System.id)).where(col(System.external_ref) == external_ref)
    if system_id is not None:
        query = query.where(col(System.id) != system_id)
    with session.no_autoflush:  # a patched value is looked up, not written yet
        taken = session.execute(query).first()
    if taken:
        raise external_ref_taken(external_ref)


def _unique_violation(exc: IntegrityError, *, key: str, external_ref: str | None) -> Exception:
    """The 409 for a unique index a concurrent write took first. SQLite names the column
    (`systems.external_ref`), PostgreSQL the index (`ix_systems_external_ref`)."""
    if external_ref is not None and "external_ref" in str(exc.orig):
        return external_ref_taken(external_ref)
    return AlreadyExists(f"A system with key '{key}' exists.")


def create_system(
    session: Session, *, body: SystemCreate, actor: Principal, now: datetime
) -> System:
    scope.ensure_may_own(actor, team=body.owner.team if body.owner else None)
    if session.execute(select(col(System.id)).where(col(System.key) == body.key)).first():
        raise AlreadyExists(f"A system with key '{body.key}' exists.")
    _ensure_external_ref_free(session, body.external_ref)
    system = System(
        key=body.key,
        name=body.name,
        description=body.description,
        purpose=body.purpose,
        scope=body.scope,
        owner_team=body.owner.team if body.owner else None,
        owner_contact=body.owner.contact if body.owner else None,
        owner_updated_at=now if body.owner else None,
        impact_areas=[area.value for area in body.impact_areas],
        oversight=body.oversight.value,
        declared_risk_tier=body.declared_risk_tier.value if body.declared_risk_tier else None,
        risk_tier="minimal",
        risk_tier_rule={},
        labels=dict(body.labels),
        external_ref=body.external_ref,
        created_at=now,
        updated_at=now,
    )
    _apply_tier(system)
    session.add(system)
    try:
        session.flush()
    except IntegrityError as exc:  # created by a concurrent request since the checks above
        raise _unique_violation(exc, key=body.key, external_ref=body.external_ref) from exc
    _replace_labels(session, system)
    readiness_service.refresh(session, system, now=now)
    events.append(
        session,
        type=EventType.system_created,
        actor=actor,
        now=now,
        system_key=system.key,
        data=body.model_dump(mode="json", exclude_none=True),
    )
    return system


def parse_label_filters(labels: list[str]) -> tuple[tuple[str, str], ...]:
    parsed = []
    for label in labels:
        name, sep, value = label.partition(":")
        if not sep or not name:
            raise Unprocessable(
                f"label filter '{label}' is not of the form name:value.",
                errors=[{"field": "label", "message": "expected name:value"}],
            )
        parsed.append((name, value))
    return tuple(parsed)


@dataclass(frozen=True)
class SystemFilters:
    stage: str | None = None
    risk_tier: str | None = None
    owner_team: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    ready_for: str | None = None


def matching(query: Narrowed, filters: SystemFilters) -> Narrowed:
    """`query` narrowed to the systems of the filters' stage, tier, owner team and labels
    (`ready_for` is left to the caller)."""
    if filters.stage:
        query = query.where(col(System.stage) == filters.stage)
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


def list_systems(
    session: Session, *, filters: SystemFilters, after: int | None, limit: int
) -> list[System]:
    query = select(System).order_by(col(System.id)).limit(limit + 1)
    if after is not None:
        query = query.where(col(System.id) > after)
    query = matching(query, filters)
    if filters.ready_for == "pilot":
        query = query.where(col(System.pilot_ready))
    elif filters.ready_for == "production":
        query = query.where(col(System.production_ready))
    return list(session.execute(query).scalars())


def _check_if_match(system: System, if_match: str | None) -> None:
    if if_match is None:
        return
    tags = [tag.strip() for tag in if_match.split(",")]
    if "*" in tags or etag(system) in tags:
        return
    raise PreconditionFailed(
        f"If-Match {if_match} does not match the current ETag {etag(system)}.",
        current_etag=etag(system),
    )


def _merged_owner(system: System, patch: SystemPatch) -> tuple[str | None, str | None]:
    if patch.owner is None:
        return None, None
    team, contact = system.owner_team, system.owner_contact
    if "team" in patch.owner.model_fields_set:
        team = patch.owner.team
    if "contact" in patch.owner.model_fields_set:
        contact = patch.owner.contact
    if (team is None) != (contact is None):
        raise Unprocessable(
            "owner needs both team and contact, or null to remove it.",
            errors=[{"field": "owner", "message": "team and contact go together"}],
        )
    return team, contact


def patch_system(
    session: Session,
    *,
    system: System,
    patch: SystemPatch,
    if_match: str | None,
    actor: Principal,
    now: datetime,
) -> System:
    _check_if_match(system, if_match)
    present = patch.model_fields_set
    nulled = sorted(name for name in present & _REQUIRED_FIELDS if getattr(patch, name) is None)
    if nulled:
        raise Unprocessable(
            f"{', '.join(nulled)} cannot be removed.",
            errors=[{"field": name, "message": "may not be null"} for name in nulled],
        )

    changes: dict[str, Any] = {}

    def change(field: str, value: Any) -> None:
        if getattr(system, field) != value:
            setattr(system, field, value)
            changes[field] = value

    for field in _PLAIN_FIELDS:
        if field in present:
            value = getattr(patch, field)
            change(field, getattr(value, "value", value))
    if "declared_risk_tier" in present:
        tier = patch.declared_risk_tier
        change("declared_risk_tier", tier.value if tier else None)
    if "impact_areas" in present and patch.impact_areas is not None:
        change("impact_areas", [area.value for area in patch.impact_areas])
    if "owner" in present:
        team, contact = _merged_owner(system, patch)
        change("owner_team", team)
        change("owner_contact", contact)
    if "labels" in present:
        labels = {} if patch.labels is None else dict(system.labels)
        for name, value in (patch.labels or {}).items():
            if value is None:
                labels.pop(name, None)
            else:
                labels[name] = value
        if len(labels) > MAX_LABELS:
            raise Unprocessable(
                f"A system has at most {MAX_LABELS} labels.",
                errors=[{"field": "labels", "message": f"at most {MAX_LABELS} labels"}],
            )
        change("labels", labels)

    if not changes:
        return system
    if "external_ref" in changes:
        # First, before any query flushes the new value: a value another system has is a
        # 409, and so is one a concurrent write took since this look (flushed here, not at
        # the commit, where it would be a 500).
        key, external_ref = system.key, system.external_ref  # a failed flush expires them
        _ensure_external_ref_free(session, external_ref, system_id=system.id)
        try:
            session.flush()
        except IntegrityError as exc:
            raise _unique_violation(exc, key=key, external_ref=external_ref) from exc
    if "owner_team" in changes:
        scope.ensure_may_own(actor, team=system.owner_team)
    from_tier = system.risk_tier
    _apply_tier(system)
    if Tier(system.risk_tier).rank < Tier(from_tier).rank:
        scope.ensure_may_lower_tier(actor, from_tier=from_tier, to_tier=system.risk_tier)
        # Lowering the tier is an approver's decision about the tier it leaves: where that
        # tier needs independent approvals, the owner team may not take it alone.
        scope.ensure_independent(
            actor,
            owner_team=system.owner_team,
            tier=from_tier,
            rules=policy_service.active_rules(session).rules,
        )
    if system.risk_tier != from_tier:
        # A confirmation holds for the tier a person saw, never for the next one.
        system.classification_confirmed_tier = None
        system.classification_confirmation_id = None
    system.version += 1
    system.updated_at = now
    if changes.keys() & {"owner_team", "owner_contact"}:
        system.owner_updated_at = now
    session.add(system)
    if "labels" in changes:
        _replace_labels(session, system)
    readiness_service.refresh(session, system, now=now)
    events.append(
        session,
        type=EventType.system_updated,
        actor=actor,
        now=now,
        system_key=system.key,
        data={"changes": changes, "version": system.version},
    )
    if system.risk_tier != from_tier:
        events.append(
            session,
            type=EventType.system_tier_changed,
            actor=actor,
            now=now,
            system_key=system.key,
            data={"from": from_tier, "to": system.risk_tier, "rule": system.risk_tier_rule},
        )
    return system
