import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select, update
from sqlmodel import Session, col

from app.auth.roles import BOOTSTRAP, Principal, Role
from app.db import Database
from app.errors import NotFound, Unauthorized
from app.events import service as events
from app.events.service import EventType
from app.models import ApiKey

KEY_PREFIX = "rdy_"
# Answers show at most this much of a secret, to recognise a key by: `rdy_` and 4 random
# characters of a generated key, and never more than a quarter of any secret.
SHOWN_PREFIX_MAX = 8
# last_used_at is refreshed at most this often, so reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)

logger = logging.getLogger("app.auth")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def shown_prefix(secret: str) -> str:
    return secret[: min(SHOWN_PREFIX_MAX, len(secret) // 4)]


def create_key(
    session: Session,
    *,
    name: str,
    role: Role,
    teams: list[str] | None = None,
    person: str | None = None,
    actor: Principal,
    now: datetime,
) -> tuple[ApiKey, str]:
    secret = new_secret()
    key = ApiKey(
        name=name,
        role=role.value,
        teams=sorted(teams) if teams is not None else None,
        person=person,
        key_hash=hash_key(secret),
        key_prefix=shown_prefix(secret),
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
        data={
            "id": key.id,
            "name": name,
            "role": role.value,
            "teams": key.teams,
            "person": person,
        },
    )
    return key, secret


def list_keys(session: Session, *, after: int | None, limit: int) -> list[ApiKey]:
    query = select(ApiKey).order_by(col(ApiKey.id)).limit(limit + 1)
    if after is not None:
        query = query.where(col(ApiKey.id) > after)
    return list(session.execute(query).scalars())


def lock_key(session: Session, *, key_id: int) -> ApiKey:
    """The key, locked until the caller's unit of work ends (404 when there is none): a
    revocation holds it while it finds and stores again what the key's approvals and
    waivers counted for, so no approval or waiver of the key (`hold_active_key`) lands in
    between."""
    key: ApiKey | None = session.execute(
        select(ApiKey).where(col(ApiKey.id) == key_id).with_for_update()
    ).scalar_one_or_none()
    if key is None:
        raise NotFound(f"No API key with id {key_id}.")
    return key


def mark_revoked(session: Session, key: ApiKey, *, now: datetime) -> None:
    """Revokes a key locked by `lock_key` (not revoked yet) in the caller's unit of work;
    requests with it get 401 from the commit on."""
    key.revoked_at = now
    session.add(key)
    session.flush()


def revoked(
    session: Session, key: ApiKey, *, systems: list[str], actor: Principal, now: datetime
) -> None:
    """Appends `api_key.revoked`, naming the systems whose stored answers the revocation
    stored again (those its approvals or waivers counted for)."""
    events.append(
        session,
        type=EventType.api_key_revoked,
        actor=actor,
        now=now,
        data={"id": key.id, "name": key.name, "role": key.role, "systems": systems},
    )


def revoked_among(session: Session, key_ids: list[int | None]) -> frozenset[int]:
    """Which of these keys are revoked (None, an identity without a key, never is)."""
    wanted = {key_id for key_id in key_ids if key_id is not None}
    if not wanted:
        return frozenset()
    rows = session.execute(
        select(col(ApiKey.id)).where(
            col(ApiKey.id).in_(wanted), col(ApiKey.revoked_at).is_not(None)
        )
    ).scalars()
    return frozenset(rows)


_HOLD_ACTIVE_KEY = (
    select(col(ApiKey.id))
    .where(col(ApiKey.id) == bindparam("key_id"), col(ApiKey.revoked_at).is_(None))
    .with_for_update(read=True)
)


def hold_active_key(session: Session, principal: Principal) -> None:
    """For a write that gives something the key's revocation takes back (an approval, a
    waiver), first in its unit of work: 401 if the key was revoked since the request was
    authenticated, else the key is held (shared) until the commit, so a revocation waits
    for this write and then finds what it gave. Taken before the system's lock, as the
    revocation takes them, so the two never wait for each other. OIDC identities have no
    revocation list: nothing to hold."""
    if principal.key_id is None:
        return
    held = session.connection().execute(_HOLD_ACTIVE_KEY, {"key_id": principal.key_id}).first()
    if held is None:
        raise Unauthorized("The API key is unknown or revoked.")


_api_keys = ApiKey.__table__  # type: ignore[attr-defined]
# Built once: the hottest statement of the service, compiled once per engine.
_FIND_ACTIVE_KEY = select(
    _api_keys.c.id, _api_keys.c.name, _api_keys.c.role, _api_keys.c.teams, _api_keys.c.last_used_at
).where(_api_keys.c.key_hash == bindparam("key_hash"), _api_keys.c.revoked_at.is_(None))
_TOUCH_KEY = (
    update(_api_keys)
    .where(_api_keys.c.id == bindparam("key_id"))
    .values(last_used_at=bindparam("now", type_=_api_keys.c.last_used_at.type))
)


def authenticate(
    database: Database,
    *,
    secret: str,
    now: datetime,
    connection: Connection | None = None,
    defer_touch: bool = False,
) -> Principal | None:
    """The principal behind a secret, or None when it is unknown or revoked.

    Looks the key up on `connection` when given (a read that shares its connection), else
    on a connection of its own, released before returning. The lookup is by hash through
    a unique index, so no secret is compared byte by byte. A due refresh of last_used_at
    is a write; with `defer_touch` it is left to the caller (`touch_due` on the result),
    for callers on the event loop, which must not wait for the write gate.
    """
    parameters = {"key_hash": hash_key(secret)}
    if connection is not None:
        row = connection.execute(_FIND_ACTIVE_KEY, parameters).one_or_none()
    else:
        with database.read_engine.connect() as own:
            row = own.execute(_FIND_ACTIVE_KEY, parameters).one_or_none()
    if row is None:
        return None
    key_id, name, role, teams, last_used_at = row
    due = last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION
    if due and not defer_touch:
        touch(database, key_id=key_id, now=now)
    return Principal(
        key_id=key_id,
        name=name,
        role=Role(role),
        teams=frozenset(teams) if teams is not None else None,
        touch_due=due and defer_touch,
    )


def touch(database: Database, *, key_id: int, now: datetime) -> None:
    with database.write_gate, database.write_engine.begin() as writer:
        writer.execute(_TOUCH_KEY, {"key_id": key_id, "now": now})


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
        key_prefix=shown_prefix(secret),
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
