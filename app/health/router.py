from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from app.db import Database
from app.db.migrations import migration_head
from app.errors import Problem, ServiceUnavailable
from app.openapi_docs import NO_SECURITY

# Probes take no API key.
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get(
    "/healthz",
    summary="Liveness",
    description="The process is up.",
    openapi_extra=NO_SECURITY,
)
def healthz() -> Health:
    return Health(status="ok")


_SCHEMA_VERSION = text("SELECT version_num FROM alembic_version")
# Ready includes taking writes, and only a write shows that: a database can answer every
# read and refuse every write (a SQLite file or directory the process may not write, a
# PostgreSQL standby or a default_transaction_read_only). A flag such as SQLite's PRAGMA
# query_only says nothing about the file, and file permissions say nothing to root. So the
# probe writes for real, inside a transaction it rolls back: it sets the version to itself,
# which would change nothing even committed, and leaves nothing behind.
_WRITE_PROBE = text("UPDATE alembic_version SET version_num = version_num")


def _takes_writes(connection: Connection) -> bool:
    if connection.dialect.name == "postgresql":
        # A migration holding the table makes the probe fail soon rather than keep a worker
        # thread waiting past the probe's own timeout.
        connection.exec_driver_sql("SET LOCAL lock_timeout = '1s'")
    try:
        connection.execute(_WRITE_PROBE)
    except SQLAlchemyError:
        return False
    return True


@router.get(
    "/readyz",
    summary="Readiness to serve",
    description=(
        "200 when the database answers, takes writes and its schema is at the latest migration."
    ),
    responses={
        503: {
            "model": Problem,
            "description": (
                "The database is unreachable, does not take writes or is not migrated to the"
                " latest version."
            ),
        }
    },
    openapi_extra=NO_SECURITY,
)
def readyz(request: Request) -> Health:
    database: Database = request.app.state.database
    expected = migration_head()
    try:
        # The write engine and gate, as any writer here: on SQLite the probe takes its turn
        # for the write lock. Leaving the block rolls the probe back.
        with database.write_gate, database.write_engine.connect() as connection:
            current = connection.execute(_SCHEMA_VERSION).scalar()
            writable = current != expected or _takes_writes(connection)
    except SQLAlchemyError as exc:
        raise ServiceUnavailable("The database cannot be reached or has no schema.") from exc
    if current != expected:
        raise ServiceUnavailable(
            f"The database schema is at {current}; the service expects {expected}."
        )
    if not writable:
        raise ServiceUnavailable("The database answers but does not take writes.")
    return Health(status="ok")
