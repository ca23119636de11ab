"""Publishing a policy version: the one write where policies come first and readiness
follows. Readiness evaluates against the active policy, so it depends on app.policies and
app.policies cannot call it; this module sits above both and runs them in order."""

from datetime import datetime

from sqlmodel import Session

from app.auth.roles import Principal
from app.models import Policy
from app.policies import service as policy_service
from app.policies.document import PolicyRules
from app.readiness import service as readiness_service


def publish(
    session: Session, *, rules: PolicyRules, activate: bool, actor: Principal, now: datetime
) -> Policy:
    """Publish a new immutable version in the caller's transaction; activating it
    re-evaluates every system before the `policy.published` event is appended."""
    policy = policy_service.add_version(
        session, rules=rules, activate=activate, actor=actor, now=now
    )
    if activate:
        readiness_service.reevaluate_all(session, policy=policy, now=now)
    policy_service.published(session, policy=policy, actor=actor, now=now)
    return policy
