from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.db import Database
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


@router.get(
    "/readyz",
    summary="Readiness to serve",
    description="200 when the database answers and its schema is at the latest migration.",
    responses={
        503: {
            "model": Problem,
            "description": "The database is unreachable or not migrated to the latest version.",
        }
    },
    openapi_extra=NO_SECURITY,
)
def readyz(request: Request) -> Health:
    database: Database = request.app.state.database
    expected: str = request.app.state.migration_head
    try:
        with database.read_engine.connect() as connection:
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        raise ServiceUnavailable("The database cannot be reached or has no schema.") from exc
    if current != expected:
        raise ServiceUnavailable(
            f"The database schema is at {current}; the service expects {expected}."
        )
    return Health(status="ok")
