"""Revoking an API key: the key stops authenticating, and what its approvals and waivers
gave stops counting (app.readiness.inputs reads the key with them), so the answers stored
for the systems they counted for are stored again in the same transaction: reads, reports
and metrics served from stored answers never show a "ready" the revocation took away.
Revocation is an auth write that readiness follows, so it runs here, above both."""

from datetime import datetime

from sqlmodel import Session

from app.auth import service as auth_service
from app.auth.roles import Principal
from app.readiness import expiry
from app.readiness import service as readiness_service


def revoke(session: Session, *, key_id: int, actor: Principal, now: datetime) -> None:
    """Revoke a key in the caller's transaction; revoking it again changes nothing (404 for
    no such key). Locks the key first, then the systems: approvals and waivers of the key
    hold it (shared) before their system, so a write of the key's either lands before
    and is found here, or waits and is refused once the revocation commits."""
    key = auth_service.lock_key(session, key_id=key_id)
    if key.revoked_at is not None:
        return
    systems = readiness_service.lock_granted_by_key(session, key_id=key_id, now=now)
    # As every write does before changing anything: what time alone changed meanwhile is
    # stored and told as such, not passed off as the revocation's doing.
    expiry.tell_time(session, systems, now=now)
    auth_service.mark_revoked(session, key, now=now)
    readiness_service.store_anew(session, systems, now=now)
    auth_service.revoked(
        session, key, systems=[system.key for system in systems], actor=actor, now=now
    )
