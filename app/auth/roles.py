from dataclasses import dataclass
from enum import StrEnum


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


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API key behind the request, named in every event it causes."""

    key_id: int | None
    name: str
    role: Role
    # Set when the caller asked `authenticate` to leave a due last_used_at refresh to it.
    touch_due: bool = False


BOOTSTRAP = Principal(key_id=None, name="bootstrap", role=Role.admin)
