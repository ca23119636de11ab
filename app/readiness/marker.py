"""Markers of stored answers, so a reader can tell which systems were stored since it
last looked (see app.readiness.mirror)."""

from sqlalchemy import func, select, text
from sqlmodel import Session, col

from app.models import System

_MARKER_KEY = "readiness_seq_marker"


def store_marker(session: Session) -> int:
    """The `readiness_seq` a store in this transaction writes (one query per transaction)."""
    transaction = session.get_transaction()
    cached = session.info.get(_MARKER_KEY)
    if cached is not None and cached[0] is transaction:
        return int(cached[1])
    with session.no_autoflush:
        if session.get_bind().dialect.name == "postgresql":
            current = text("SELECT pg_current_xact_id()::text::bigint")
            marker = session.execute(current).scalar_one()
        else:
            # Writers take turns on SQLite, so one more than any stored marker is past
            # every horizon taken before this transaction commits.
            following = select(func.coalesce(func.max(col(System.readiness_seq)), 0) + 1)
            marker = session.execute(following).scalar_one()
    session.info[_MARKER_KEY] = (transaction, marker)
    return int(marker)


def horizon(session: Session) -> int:
    """A value every store committed after this call's snapshot will have reached: on
    PostgreSQL the oldest transaction still running then (markers are transaction ids)."""
    if session.get_bind().dialect.name == "postgresql":
        oldest = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return int(session.execute(oldest).scalar_one())
    query = select(func.coalesce(func.max(col(System.readiness_seq)), 0) + 1)
    return int(session.execute(query).scalar_one())
