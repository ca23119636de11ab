"""Property-based requests generated from the OpenAPI document against the real app: no
operation answers 5xx, and every answer matches what the document says of it (status code,
content type, body schema). A first slice of the contract checks; the full run with the
stateful phase belongs to `make contract`."""

import os
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from app.main import create_app
from tests.conftest import ADMIN_SECRET, auth
from tests.factories import make_system

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]

pytestmark = pytest.mark.slow


# schemathesis.toml authenticates the CLI run with ${SCHEMATHESIS_ADMIN_KEY}; here it is the
# suite's bootstrap admin key (cases below also send it themselves).
os.environ.setdefault("SCHEMATHESIS_ADMIN_KEY", ADMIN_SECRET)

# The document does not depend on the database, so any app instance can describe it; each
# test points the schema at the suite's app and its freshly emptied database.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@pytest.fixture
def seeded(app: FastAPI) -> FastAPI:
    with TestClient(app) as client:  # runs start-up: the bootstrap admin key
        make_system(client, auth(ADMIN_SECRET), key="some-system", tier="high")
    return app


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_operations_conform(case: Any, seeded: FastAPI) -> None:
    case.headers = {**(case.headers or {}), **auth(ADMIN_SECRET)}
    case.call_and_validate(app=seeded, checks=CHECKS)
