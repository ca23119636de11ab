"""Markers of stored answers, so a reader can tell which systems were stored since it
last looked (see app.reports.mirror)."""

from typing import Any

from sqlalchemy import BigInteger, ColumnElement, select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session


class StoreMarker(ColumnElement[int]):
    """The `readiness_seq` a store writes, computed by the database inside the storing
    statement (`SET readiness_seq = <marker>`), so stores need no query of their own.

    PostgreSQL: the writer's transaction id. SQLite: writers take turns, so one more than
    any stored marker (its own earlier stores included) is past every horizon taken before
    this transaction commits.
    """

    type = BigInteger()
    # No state of its own: every instance compiles alike, so statements holding one are
    # cached. Without an (empty) traversal, SQLAlchemy compiled the storing UPDATE anew on
    # every write.
    _traverse_internals = []  # noqa: RUF012 (SQLAlchemy's own convention)
    inherit_cache = True


@compiles(StoreMarker, "postgresql")
def _transaction_id(_element: StoreMarker, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "pg_current_xact_id()::text::bigint"


@compiles(StoreMarker)
def _one_past_the_largest(_element: StoreMarker, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "(SELECT coalesce(max(readiness_seq), 0) + 1 FROM systems)"


def horizon(session: Session) -> int:
    """A value every store committed after this call's snapshot will have reached: on
    PostgreSQL the oldest transaction still running then (markers are transaction ids)."""
    if session.get_bind().dialect.name == "postgresql":
        oldest = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return int(session.execute(oldest).scalar_one())
    # SQLite: the marker the next store would write, one past the largest stored.
    return int(session.execute(select(StoreMarker())).scalar_one())
