import json
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


# Parsed documents by version. A published version never changes, but the document is
# compared anyway (cheaply) so a rebuilt database can never be answered from a stale entry.
_parsed: dict[int, tuple[dict[str, Any], PolicyRules]] = {}


def rules_of(policy: Policy) -> PolicyRules:
    cached = _parsed.get(policy.version)
    if cached is not None and cached[0] == policy.document:
        return cached[1]
    rules = PolicyRules.model_validate(policy.document)
    _parsed[policy.version] = (policy.document, rules)
    return rules


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


def publish(
    session: Session, *, rules: PolicyRules, activate: bool, actor: Principal, now: datetime
) -> Policy:
    """Publish a new immutable version; activating it re-evaluates every system."""
    # Imported here: readiness depends on policies, and re-evaluation on publish is the
    # one place the dependency runs the other way.
    from app.readiness import service as readiness_service

    latest = session.execute(select(func.max(col(Policy.version)))).scalar_one()
    policy = Policy(
        version=(latest or 0) + 1,
        document=rules.model_dump(mode="json"),
        is_active=False,
        created_at=now,
        created_by=actor.key_id,
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
        session.add(policy)
        session.flush()
        readiness_service.reevaluate_all(session, policy=policy, now=now)
    events.append(
        session,
        type=EventType.policy_published,
        actor=actor,
        now=now,
        data={"version": policy.version, "activated": activate},
    )
    return policy
