"""On PostgreSQL, evidence writes that arrive while another batch is being written share the
next transaction (app.db.group_commit.run_batched_write): every write appends an event under
the lock that keeps the feed in commit order, so writers take turns at their commits, and a
batch pays for one turn.

PostgreSQL's behaviour is the subject, so these tests use a PostgreSQL database of their own
whichever back-end the suite runs on."""

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, make_url, text

from app.config import Settings
from app.db import Database
from app.events.service import _EVENT_ORDER_LOCK
from app.main import create_app
from tests.conftest import ADMIN_SECRET, FakeClock, alembic_config, auth
from tests.db.test_sqlite_writes import SYSTEM, _pending_evidence_writes

SERVER = os.environ.get("TEST_POSTGRESQL_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    name = f"readiness_group_commit_{os.getpid()}"
    server = create_engine(make_url(f"{SERVER}/postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{SERVER}/{name}"
    try:
        command.upgrade(alembic_config(url), "head")
        yield url
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture
def client(postgresql_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=postgresql_url,
        readiness_bootstrap_admin_key=ADMIN_SECRET,  # type: ignore[arg-type]
        readiness_mirror_warmup=False,
    )
    app = create_app(settings, clock=FakeClock())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        created = test_client.post("/v1/systems", json=SYSTEM, headers=auth(ADMIN_SECRET))
        assert created.status_code == 201, created.text
        yield test_client
    app.state.database.dispose()


def test_writes_that_queue_behind_a_batch_commit_together_each_as_if_alone(
    client: TestClient, postgresql_url: str
) -> None:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    commits: list[str] = []

    def commit(_connection: Any) -> None:
        commits.append("commit")

    answers: dict[int, httpx.Response] = {}

    def put(index: int) -> None:
        answers[index] = client.put(
            "/v1/systems/locked-sys/evidence/monitoring",
            json={"status": "met", "summary": f"w{index}"},
            headers=auth(ADMIN_SECRET),
        )

    threads = [threading.Thread(target=put, args=(index,)) for index in range(8)]
    holder = create_engine(postgresql_url)
    with holder.connect() as other:
        # Another process appending an event: the first write's batch waits for it at its
        # append; the seven writes sent meanwhile queue for the next batch.
        other.execute(text(f"SELECT pg_advisory_lock({_EVENT_ORDER_LOCK})"))
        event.listen(database.write_engine, "commit", commit)
        try:
            threads[0].start()
            deadline = time.monotonic() + 30
            while not _first_write_waits_for_the_lock(other):
                assert time.monotonic() < deadline, "the first write never reached its append"
                time.sleep(0.01)
            for thread in threads[1:]:
                thread.start()
            while _pending_evidence_writes(database) < 7:
                assert time.monotonic() < deadline, "the writes never queued"
                time.sleep(0.01)
            other.execute(text(f"SELECT pg_advisory_unlock({_EVENT_ORDER_LOCK})"))
            for thread in threads:
                thread.join(30)
        finally:
            event.remove(database.write_engine, "commit", commit)
    holder.dispose()

    assert [answers[index].status_code for index in range(8)] == [200] * 8
    # The first write's transaction, then one for the seven (the key's last use is written
    # once a minute, in a transaction of its own, and may add one).
    assert len(commits) in (2, 3), commits
    versions = sorted(answers[index].json()["version"] for index in range(8))
    assert versions == list(range(1, 9))
    assert answers[0].json()["version"] == 1
    events = client.get(
        "/v1/events", params={"type": "evidence.recorded"}, headers=auth(ADMIN_SECRET)
    ).json()["items"]
    assert [item["data"]["version"] for item in events] == list(range(1, 9))


def _first_write_waits_for_the_lock(connection: Any) -> bool:
    waiting = connection.execute(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND objid = :low"
        ),
        {"low": _EVENT_ORDER_LOCK & 0xFFFFFFFF},
    ).scalar_one()
    return bool(waiting)
