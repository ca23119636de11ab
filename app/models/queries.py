from collections.abc import Callable
from typing import Any, Generic, TypeVar, TypeVarTuple

from sqlalchemy import ColumnElement, Connection, Result, Select, bindparam
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


# The filter a `PerSystemQuery` applies to its system id column.
SystemFilter = Callable[[Any], ColumnElement[bool]]
Columns = TypeVarTuple("Columns")


def _one_system(column: Any) -> ColumnElement[bool]:
    return col(column) == bindparam("system_id")


def _many_systems(column: Any) -> ColumnElement[bool]:
    return col(column).in_(bindparam("system_ids", expanding=True))


class PerSystemQuery(Generic[*Columns]):
    """A statement over the rows of one or many systems, built once in both shapes.

    Readiness is evaluated on every write for one system, and in batches for reports and
    policy changes. Building a statement costs more than SQLite spends running it, and an
    expanding `IN` costs a rewrite of the SQL on every run, so `= :system_id` serves the
    one system and `IN (...)` the batches. `build` makes the statement from a filter that
    it applies to its system id column.
    """

    def __init__(self, build: Callable[[SystemFilter], Select[*Columns]]) -> None:
        self._one = build(_one_system)
        self._many = build(_many_systems)

    def rows(
        self, connection: Connection, system_ids: list[int], **parameters: Any
    ) -> Result[*Columns]:
        if len(system_ids) == 1:
            return connection.execute(self._one, {"system_id": system_ids[0], **parameters})
        return connection.execute(self._many, {"system_ids": system_ids, **parameters})
