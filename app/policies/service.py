import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.auth.roles import Principal
from app.errors import Conflict, NotFound
from app.events import service as events
from app.events.service import EventType
from app.models import Policy
from app.policies.document import PolicyRules

DEFAULT_POLICY_FILE = Path(__file__).with_name("default_policy.json")
DEFAULT_POLICY_VERSION = 1


def default_policy_document() -> dict[str, Any]:
    """The shipped default policy, validated and normalised."""
    raw = json.loads(DEFAULT_POLICY_FILE.read_text())
    return PolicyRules.model_validate(raw).model_dump(mode="json")


def document_digest(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_policy(
    *, version: int, rules: PolicyRules, active: bool, now: datetime, created_by: int | None
) -> Policy:
    document = rules.model_dump(mode="json")
    return Policy(
        version=version,
        document=document,
        digest=document_digest(document),
        is_active=active,
        created_at=now,
        created_by=created_by,
    )


# Parsed documents by digest: published versions never change, so each is parsed once.
_parsed: dict[str, PolicyRules] = {}


# What a stored document that predates a field means by leaving it out, where that is not
# the field's default for a new publication: a gate a person must open is added by
# publishing a version that asks for it, never by upgrading the service under a policy
# already in force (docs/operations.md, Upgrading).
STORED_BEFORE: dict[str, Any] = {"classification_confirmed_for": []}


def rules_of(policy: Policy) -> PolicyRules:
    rules = _parsed.get(policy.digest)
    if rules is None:
        document = {**STORED_BEFORE, **policy.document}
        rules = _parsed[policy.digest] = PolicyRules.model_validate(document)
    return rules


@dataclass(frozen=True)
class ActiveRules:
    version: int
    rules: PolicyRules


_policies = Policy.__table__  # type: ignore[attr-defined]
_ACTIVE_DIGEST = select(_policies.c.version, _policies.c.digest).where(_policies.c.is_active)


_ACTIVE_RULES_KEY = "active_rules"


def active_rules(session: Session) -> ActiveRules:
    """The active policy's rules, read once per unit of work (a write evaluates several
    times: evidence, its readiness, the answer's staleness), and parsed once per process."""
    cached: ActiveRules | None = session.info.get(_ACTIVE_RULES_KEY)
    if cached is not None:
        return cached
    row = session.connection().execute(_ACTIVE_DIGEST).one_or_none()
    if row is None:
        raise NotFound("No policy is active; the database is not migrated.")
    version, digest = row
    rules = _parsed.get(digest)
    if rules is None:
        rules = rules_of(get_policy(session, version))
    active = session.info[_ACTIVE_RULES_KEY] = ActiveRules(version=version, rules=rules)
    return active


def get_policy(session: Session, version: int) -> Policy:
    policy = session.get(Policy, version)
    if policy is None:
        raise NotFound(f"No policy version {version}.")
    return policy


def active_policy(session: Session) -> Policy:
    policy = session.exec(select(Policy).where(col(Policy.is_active))).one_or_none()
    if policy is None:
        raise NotFound("No policy is active; the database is not migrated.")
    return policy


def add_version(
    session: Session, *, rules: PolicyRules, activate: bool, actor: Principal, now: datetime
) -> Policy:
    """Add a new immutable version, made the active one if `activate`.

    One step of publishing: against an activated version every system's readiness is then
    re-evaluated, and the `policy.published` event appended last (`published`), all in the
    caller's transaction. `app.flows.policy_publication.publish` runs the three in order.
    """
    latest = session.execute(select(func.max(col(Policy.version)))).scalar_one()
    policy = new_policy(
        version=(latest or 0) + 1, rules=rules, active=False, now=now, created_by=actor.key_id
    )
    session.add(policy)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent publish took the version number
        raise Conflict("Another policy version was published at the same time; retry.") from exc
    if activate:
        session.execute(update(Policy).where(col(Policy.is_active)).values(is_active=False))
        session.flush()
        policy.is_active = True
        session.info.pop(_ACTIVE_RULES_KEY, None)
        session.add(policy)
        session.flush()
    return policy


def published(session: Session, *, policy: Policy, actor: Principal, now: datetime) -> None:
    """The `policy.published` event, appended once everything the publication changed is
    written."""
    events.append(
        session,
        type=EventType.policy_published,
        actor=actor,
        now=now,
        data={"version": policy.version, "activated": policy.is_active},
    )
