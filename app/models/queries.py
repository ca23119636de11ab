from typing import TypeVar

from sqlmodel import Session, col, select

from app.models.lifecycle import Approval, Transition, Waiver
from app.models.pilot import Pilot
from app.models.readiness import ReadinessSnapshot

PerSystem = TypeVar("PerSystem", Approval, Pilot, ReadinessSnapshot, Transition, Waiver)


def newest_first(
    session: Session,
    model: type[PerSystem],
    *,
    system_id: int | None,
    before: int | None,
    limit: int,
) -> list[PerSystem]:
    """A page of one system's records, newest first, with one row more than `limit` so the
    caller can tell whether another page follows."""
    query = (
        select(model)
        .where(col(model.system_id) == system_id)
        .order_by(col(model.id).desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(col(model.id) < before)
    return list(session.exec(query))
