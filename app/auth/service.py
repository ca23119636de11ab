import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import Session, col

from app.auth.roles import BOOTSTRAP, Principal, Role
from app.db import Database
from app.errors import NotFound
from app.events import service as events
from app.events.service import EventType
from app.models import ApiKey

KEY_PREFIX = "rdy_"
# last_used_at is refreshed at most this often, so reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)

logger = logging.getLogger("app.auth")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(
    session: Session, *, name: str, role: Role, actor: Principal, now: datetime
) -> tuple[ApiKey, str]:
    secret = new_secret()
    key = ApiKey(
        name=name,
        role=role.value,
        key_hash=hash_key(secret),
        key_prefix=secret[: len(KEY_PREFIX) + 6],
        created_at=now,
        created_by=actor.key_id,
    )
    session.add(key)
    session.flush()
    events.append(
        session,
        type=EventType.api_key_created,
        actor=actor,
        now=now,
        data={"id": key.id, "name": name, "role": role.value},
    )
    return key, secret


def revoke_key(session: Session, *, key_id: int, actor: Principal, now: datetime) -> None:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No API key with id {key_id}.")
    if key.revoked_at is not None:
        return
    key.revoked_at = now
    session.add(key)
    session.flush()
    events.append(
        session,
        type=EventType.api_key_revoked,
        actor=actor,
        now=now,
        data={"id": key.id, "name": key.name, "role": key.role},
    )


def authenticate(
    session: Session, database: Database, *, secret: str, now: datetime, in_write: bool
) -> Principal | None:
    """The principal behind a secret, or None when it is unknown or revoked.

    The lookup is by hash through a unique index, so no secret is compared byte by byte.
    """
    row = session.execute(
        select(col(ApiKey.id), col(ApiKey.name), col(ApiKey.role), col(ApiKey.last_used_at)).where(
            col(ApiKey.key_hash) == hash_key(secret),
            col(ApiKey.revoked_at).is_(None),
        )
    ).one_or_none()
    if row is None:
        return None
    key_id, name, role, last_used_at = row
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        statement = update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=now)
        if in_write:
            session.execute(statement)
        else:
            # A read's transaction may not write; a short one of its own does.
            with database.write_engine.begin() as connection:
                connection.execute(statement)
    return Principal(key_id=key_id, name=name, role=Role(role))


def ensure_bootstrap_key(session: Session, *, secret: str, now: datetime) -> None:
    existing = session.execute(
        select(ApiKey).where(col(ApiKey.key_hash) == hash_key(secret))
    ).scalar_one_or_none()
    if existing is not None:
        if existing.revoked_at is not None:
            logger.warning("the bootstrap admin key was revoked and stays revoked")
        return
    key = ApiKey(
        name="bootstrap-admin",
        role=Role.admin.value,
        key_hash=hash_key(secret),
        key_prefix=secret[:10],
        created_at=now,
    )
    session.add(key)
    session.flush()
    events.append(
        session,
        type=EventType.api_key_created,
        actor=BOOTSTRAP,
        now=now,
        data={"id": key.id, "name": key.name, "role": key.role},
    )
