"""On SQLite, evidence writes run on the event loop when the write lock is free at once
(app.db.run_write). When another process holds the lock, the write must wait its turn in
a worker thread, never fail and never stall the other requests of the process.

SQLite's lock is the subject, so these tests use a SQLite file of their own whichever
back-end the suite runs on."""

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import ADMIN_SECRET, FakeClock, alembic_config, auth

SYSTEM = {
    "key": "locked-sys",
    "name": "Locked",
    "impact_areas": ["drafting"],
    "oversight": "human_reviews_all",
}


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "writes.db"
    command.upgrade(alembic_config(f"sqlite:///{path}"), "head")
    return path


@pytest.fixture
def sqlite_client(sqlite_file: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{sqlite_file}",
        readiness_bootstrap_admin_key=ADMIN_SECRET,  # type: ignore[arg-type]
    )
    app = create_app(settings, clock=FakeClock())
    with TestClient(app, raise_server_exceptions=False) as client:
        created = client.post("/v1/systems", json=SYSTEM, headers=auth(ADMIN_SECRET))
        assert created.status_code == 201, created.text
        yield client
    app.state.database.dispose()


def _put_evidence(client: TestClient, summary: str) -> httpx.Response:
    return client.put(
        "/v1/systems/locked-sys/evidence/monitoring",
        json={"status": "met", "summary": summary},
        headers=auth(ADMIN_SECRET),
    )


def test_a_write_waits_for_another_process_holding_the_write_lock(
    sqlite_client: TestClient, sqlite_file: Path
) -> None:
    assert _put_evidence(sqlite_client, "before").status_code == 200

    # Another process's writer: a connection of its own holding SQLite's write lock.
    other = sqlite3.connect(sqlite_file, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    answers: list[httpx.Response] = []
    writer = threading.Thread(target=lambda: answers.append(_put_evidence(sqlite_client, "after")))
    try:
        writer.start()
        writer.join(1.0)
        assert writer.is_alive(), "the write did not wait for the lock"
        # Meanwhile the process still answers: reads, and the write is not holding the loop.
        readiness = sqlite_client.get(
            "/v1/systems/locked-sys/readiness", headers=auth(ADMIN_SECRET)
        )
        assert readiness.status_code == 200
        assert sqlite_client.get("/healthz").status_code == 200
    finally:
        other.execute("COMMIT")
        other.close()
    writer.join(30)

    assert [answer.status_code for answer in answers] == [200]
    assert answers[0].json()["version"] == 2
    history = sqlite_client.get(
        "/v1/systems/locked-sys/evidence/monitoring/history", headers=auth(ADMIN_SECRET)
    ).json()["items"]
    assert [(item["version"], item["summary"]) for item in history] == [
        (2, "after"),
        (1, "before"),
    ]


def test_a_failed_write_leaves_nothing_behind_and_frees_the_lock(
    sqlite_client: TestClient,
) -> None:
    # An unknown system fails inside the unit of work, after the write lock was taken.
    missing = sqlite_client.put(
        "/v1/systems/no-such-sys/evidence/monitoring",
        json={"status": "met", "summary": "lost"},
        headers=auth(ADMIN_SECRET),
    )
    assert missing.status_code == 404
    # The lock was released: the next write goes through at once, as version 1.
    written = _put_evidence(sqlite_client, "next")
    assert written.status_code == 200
    assert written.json()["version"] == 1
    events = sqlite_client.get(
        "/v1/events", params={"type": "evidence.recorded"}, headers=auth(ADMIN_SECRET)
    ).json()["items"]
    assert [event["system_key"] for event in events] == ["locked-sys"]
