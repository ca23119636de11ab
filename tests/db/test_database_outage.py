"""A database that is out of reach, read-only or not migrated yet: the process starts and
stays up, requests that need the database answer 503 with Retry-After (a retry later works),
/readyz answers 503, and the bootstrap admin key appears once the database takes it."""

import base64
import logging
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url

from app.config import Settings
from app.main import create_app
from tests.conftest import ADMIN_SECRET, AUDIT_SEED, FakeClock, alembic_config, auth
from tests.factories import system_body
from tests.serving import free_port, make_run_server

PROBLEM = "application/problem+json"


def unreachable_postgresql() -> str:
    # Nothing listens on a port just freed.
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/readiness"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "/problems/service-unavailable"
    assert problem["status"] == 503
    assert int(response.headers["retry-after"]) >= 1
    # Answered inside the other middleware, like any answer.
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"


def requests_needing_the_database(client: TestClient) -> list[httpx.Response]:
    admin = auth(ADMIN_SECRET)
    return [
        client.get("/v1/systems", headers=admin),
        client.get("/v1/systems/claims-triage/readiness", headers=admin),
        client.post("/v1/systems", json=system_body(), headers=admin),
        # Idempotency looks the key up itself, before the route runs.
        client.post("/v1/systems", json=system_body(), headers={**admin, "Idempotency-Key": "k-1"}),
        client.put(
            "/v1/systems/claims-triage/evidence/monitoring",
            json={"status": "met"},
            headers=admin,
        ),
        client.get("/metrics"),
    ]


def bootstrap_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bootstrap-admin-key"]


@pytest.fixture
def scratch_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the suite's kind: a new file on SQLite, a new database on
    PostgreSQL (dropped after)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    url = make_url(database_url)
    name = f"{url.database}_scratch_{os.getpid()}"
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["postgresql on a closed port", "sqlite in a directory gone"])
def test_a_database_out_of_reach_answers_503_and_the_process_stays_up(
    where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if where.startswith("sqlite"):
        directory = tmp_path / "data"
        directory.mkdir()
        url = f"sqlite:///{directory / 'readiness.db'}"
        command.upgrade(alembic_config(url), "head")
        shutil.rmtree(directory)
    else:
        url = unreachable_postgresql()
    # The signing key configured, as in production: a generated one would have nowhere to go.
    app = create_app(
        Settings(
            database_url=url,
            readiness_bootstrap_admin_key=ADMIN_SECRET,  # type: ignore[arg-type]
            readiness_audit_signing_key=base64.b64encode(AUDIT_SEED).decode(),  # type: ignore[arg-type]
        )
    )
    caplog.set_level(logging.INFO)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == PROBLEM
        for response in requests_needing_the_database(client):
            assert_unavailable(response)
        # Still up, and its background threads give up nothing but noise: said once each.
        time.sleep(1.5)
        assert client.get("/healthz").status_code == 200
    assert not bootstrap_threads()
    messages = [record.getMessage() for record in caplog.records]
    assert sum("bootstrap admin key not created yet" in m for m in messages) == 1
    # SQLite's checkpointer failed every 0.25 s meanwhile (PostgreSQL has none).
    checkpoint_failures = 1 if where.startswith("sqlite") else 0
    assert sum("WAL checkpoint failed" in m for m in messages) == checkpoint_failures
    assert not [m for m in messages if m.startswith("unhandled error")]
    app.state.database.dispose()


@pytest.mark.slow
def test_the_server_starts_and_stays_up_without_its_database(tmp_path: Path) -> None:
    env = {"DATABASE_URL": unreachable_postgresql(), "READINESS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with make_run_server(env, tmp_path) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.base}/readyz", timeout=10)
        assert refused.value.code == 503
        time.sleep(1)
        assert server.process.poll() is None
        with urllib.request.urlopen(f"{server.base}/healthz", timeout=10) as answer:
            assert answer.status == 200


def test_a_read_only_sqlite_database_reads_but_is_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "readiness.db"
    command.upgrade(alembic_config(f"sqlite:///{path}"), "head")
    clock = FakeClock()

    def serve(url: str) -> TestClient:
        settings = Settings(database_url=url, readiness_bootstrap_admin_key=ADMIN_SECRET)  # type: ignore[arg-type]
        return TestClient(create_app(settings, clock=clock), raise_server_exceptions=False)

    with serve(f"sqlite:///{path}") as writable:
        assert writable.get("/readyz").status_code == 200
        assert writable.post(
            "/v1/systems", json=system_body(), headers=auth(ADMIN_SECRET)
        ).is_success
    writable.app.state.database.dispose()  # type: ignore[attr-defined]
    before = path.read_bytes()

    with serve(f"sqlite:///file:{path}?mode=ro&uri=true") as read_only:
        ready = read_only.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"] == "The database answers but does not take writes."
        listed = read_only.get("/v1/systems", headers=auth(ADMIN_SECRET))
        assert listed.status_code == 200
        assert [item["key"] for item in listed.json()["items"]] == ["claims-triage"]
        assert_unavailable(
            read_only.post(
                "/v1/systems", json=system_body(key="another"), headers=auth(ADMIN_SECRET)
            )
        )
    read_only.app.state.database.dispose()  # type: ignore[attr-defined]
    assert path.read_bytes() == before


def _postgresql_sessions(url: str, *, read_only: bool) -> None:
    """Sets the database's default_transaction_read_only and ends its other sessions, so
    the app's pool reconnects under the new default (as after a failover)."""
    parsed = make_url(url)
    server = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
    with server.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{parsed.database}" {setting}')
        connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{parsed.database}' AND pid <> pg_backend_pid()"
        )
    server.dispose()


def test_readyz_is_503_while_postgresql_takes_no_writes(scratch_url: str) -> None:
    if not scratch_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's read-only mode; SQLite's is tested above")
    command.upgrade(alembic_config(scratch_url), "head")
    settings = Settings(database_url=scratch_url, readiness_bootstrap_admin_key=ADMIN_SECRET)  # type: ignore[arg-type]
    app = create_app(settings, clock=FakeClock())
    admin = auth(ADMIN_SECRET)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/systems", json=system_body(), headers=admin).is_success
        _postgresql_sessions(scratch_url, read_only=True)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"] == "The database answers but does not take writes."
        assert client.get("/v1/systems/claims-triage", headers=admin).status_code == 200
        assert_unavailable(
            client.post("/v1/systems", json=system_body(key="another"), headers=admin)
        )
        _postgresql_sessions(scratch_url, read_only=False)
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/systems", json=system_body(key="another"), headers=admin).is_success
    app.state.database.dispose()


def test_the_bootstrap_key_works_once_the_database_is_migrated_without_a_restart(
    scratch_url: str,
) -> None:
    settings = Settings(database_url=scratch_url, readiness_bootstrap_admin_key=ADMIN_SECRET)  # type: ignore[arg-type]
    app = create_app(settings, clock=FakeClock())
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 503
        command.upgrade(alembic_config(scratch_url), "head")
        deadline = time.monotonic() + 20
        answer = client.get("/v1/api-keys", headers=auth(ADMIN_SECRET))
        while answer.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            answer = client.get("/v1/api-keys", headers=auth(ADMIN_SECRET))
        assert answer.status_code == 200, answer.text
        assert [item["name"] for item in answer.json()["items"]] == ["bootstrap-admin"]
        assert client.get("/readyz").status_code == 200
    assert not bootstrap_threads()
    app.state.database.dispose()


@pytest.mark.slow
def test_a_database_that_takes_connections_but_never_answers_gets_503_not_a_hang() -> None:
    import socket

    from app.db.engines import PG_CONNECT_TIMEOUT_S

    # A listening socket nobody accepts from: the kernel completes the handshake, and then
    # nothing ever answers, as with a frozen server or proxy.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/readiness"
        app = create_app(Settings(database_url=url, readiness_mirror_warmup=False))
        with TestClient(app, raise_server_exceptions=False) as client:
            answers: list[httpx.Response] = []
            asking = threading.Thread(
                target=lambda: answers.append(
                    client.get("/v1/systems", headers=auth(ADMIN_SECRET))
                ),
                daemon=True,
            )
            asking.start()
            asking.join(PG_CONNECT_TIMEOUT_S * 3)
            assert not asking.is_alive(), "the request still waits on a database that is silent"
            assert_unavailable(answers[0])
    finally:
        silent.close()
