from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    viewer = "viewer"
    pipeline = "pipeline"
    approver = "approver"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: "Role") -> bool:
        return self.rank >= needed.rank


class ActorKind(StrEnum):
    """What stands behind an actor: an API key, an OIDC identity, or the service itself."""

    api_key = "api_key"
    oidc = "oidc"
    service = "service"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key or a verified OIDC identity, named in every event and
    record it causes."""

    key_id: int | None
    name: str
    role: Role
    kind: ActorKind = ActorKind.api_key
    # None: platform-wide, it acts for every team. A set: it writes only to systems whose
    # owner team is in it.
    teams: frozenset[str] | None = None
    # Set for OIDC identities: the token's `iss` and `sub`, which together name it.
    issuer: str | None = None
    subject: str | None = None
    # Set when the caller asked `authenticate` to leave a due last_used_at refresh to it.
    touch_due: bool = False

    def acts_for(self, team: str | None) -> bool:
        """Whether it may write to a system owned by `team` (None: a system without owner,
        which only platform-wide identities may write to)."""
        return self.teams is None or (team is not None and team in self.teams)

    def columns(self, prefix: str = "actor") -> dict[str, Any]:
        """The columns a record names its actor in (app.schemas.Actor.recorded reads them)."""
        return {
            f"{prefix}_id": self.key_id,
            f"{prefix}_name": self.name,
            f"{prefix}_kind": self.kind.value,
            f"{prefix}_issuer": self.issuer,
            f"{prefix}_subject": self.subject,
        }


BOOTSTRAP = Principal(key_id=None, name="bootstrap", role=Role.admin, kind=ActorKind.service)
# Who the time-driven readiness events name (app.readiness.expiry): the service itself, storing
# what time changed, for every team.
SCHEDULER = Principal(key_id=None, name="scheduler", role=Role.pipeline, kind=ActorKind.service)
