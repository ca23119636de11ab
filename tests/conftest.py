"""Test harness: a real database (SQLite, or PostgreSQL from TEST_DATABASE_URL) migrated
with Alembic once per run, emptied before every test, and the real app over httpx."""

import base64
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import URL, Engine, create_engine, make_url, text
from sqlmodel import Session, SQLModel

from app.config import Settings
from app.main import PROJECT_ROOT, create_app
from app.policies.document import PolicyRules
from app.policies.service import DEFAULT_POLICY_VERSION, default_policy_document, new_policy

ADMIN_SECRET = "rdy_test_admin_secret_0123456789abcdef"
# The apps' checkpoint signing key (READINESS_AUDIT_SIGNING_KEY), as production configures
# one; tests/audit/test_signing_key.py runs without it too.
AUDIT_SEED = bytes(range(32))
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeClock:
    """An injectable clock: tests move time instead of sleeping."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # set under `pytest -n` (make test-fast)
    if not url:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    elif worker:
        # Each worker process empties its database before every test: one of its own, next
        # to the one named, dropped when the worker is done.
        with _own_database(make_url(url), worker) as own:
            command.upgrade(alembic_config(own), "head")
            yield own
        return
    command.upgrade(alembic_config(url), "head")
    yield url


@contextmanager
def _own_database(url: URL, worker: str) -> Iterator[str]:
    name = f"{url.database}_{worker}"
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _empty(engine: Engine) -> None:
    tables = [table.name for table in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))
    with Session(engine) as session:
        session.add(
            new_policy(
                version=DEFAULT_POLICY_VERSION,
                rules=PolicyRules.model_validate(default_policy_document()),
                active=True,
                now=START,
                created_by=None,
            )
        )
        session.commit()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mirror_warmup() -> bool:
    """Whether the app builds its readiness mirror at start-up, as it does in production.
    Off here, where no test reads a report: the reports and metrics tests turn it on
    (their conftest.py), and `@pytest.mark.parametrize("mirror_warmup", [False])` there
    leaves it unbuilt. The two ways of counting agree (tests/reports/test_counts.py)."""
    return False


@pytest.fixture
def app_settings() -> dict[str, Any]:
    """Settings a test module sets for its app, beside the database and bootstrap key."""
    return {}


@pytest.fixture
def app(
    database_url: str,
    engine: Engine,
    clock: FakeClock,
    mirror_warmup: bool,
    app_settings: dict[str, Any],
) -> Iterator[FastAPI]:
    _empty(engine)
    settings = Settings(
        database_url=database_url,
        readiness_bootstrap_admin_key=ADMIN_SECRET,  # type: ignore[arg-type]
        readiness_mirror_warmup=mirror_warmup,
        # The scheduler, the webhook dispatcher and the MLflow reconciliation are off unless
        # a test turns them on: tests move the clock, and a pass run meanwhile would append
        # events, read the outbox or call MLflow where the test does not expect it
        # (tests/readiness/test_expiry.py, tests/webhooks and
        # tests/integrations/mlflow/test_reconcile.py run their passes themselves).
        **{
            "readiness_audit_signing_key": base64.b64encode(AUDIT_SEED).decode(),
            "readiness_expiry_events": False,
            "readiness_webhook_dispatch": False,
            "readiness_mlflow_reconcile_seconds": 0,
            **app_settings,
        },
    )
    application = create_app(settings, clock=clock)
    yield application
    application.state.database.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The real ASGI app through httpx; 500s come back as responses, as a client sees them."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        if app.state.settings.readiness_mirror_warmup:
            # Built from the emptied database before the test starts, so which path a
            # report takes does not depend on how fast the build ran.
            assert app.state.mirror_warmup.wait(timeout=30)
        yield test_client
    assert not warmup_threads(), "a mirror warm-up outlived its app"


def warmup_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "readiness-mirror-warmup"]


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def admin(client: TestClient) -> dict[str, str]:
    return auth(ADMIN_SECRET)


@pytest.fixture
def keys(client: TestClient, admin: dict[str, str]) -> dict[str, dict[str, str]]:
    """Headers for one key of every role."""
    headers = {"admin": admin}
    for role in ("viewer", "pipeline", "approver"):
        response = client.post(
            "/v1/api-keys", json={"name": f"{role}-key", "role": role}, headers=admin
        )
        assert response.status_code == 201, response.text
        headers[role] = auth(response.json()["key"])
    return headers


@pytest.fixture
def pipeline(keys: dict[str, dict[str, str]]) -> dict[str, str]:
    return keys["pipeline"]


@pytest.fixture
def viewer(keys: dict[str, dict[str, str]]) -> dict[str, str]:
    return keys["viewer"]


@pytest.fixture
def approver(keys: dict[str, dict[str, str]]) -> dict[str, str]:
    return keys["approver"]


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """The app under a real uvicorn server on loopback, for tests of true concurrency."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def project_path(*parts: str) -> Path:
    return PROJECT_ROOT.joinpath(*parts)
