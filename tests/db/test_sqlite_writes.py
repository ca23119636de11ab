"""On SQLite, evidence writes that arrive together share one transaction
(app.db.group_commit.run_batched_write), run on the event loop when the write lock is free
at once. When another process holds the lock, the write must wait its turn in a worker
thread, never fail and never stall the other requests of the process.

SQLite's lock is the subject, so these tests use a SQLite file of their own whichever
back-end the suite runs on."""

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.config import Settings
from app.db import Database
from app.evidence.router import RECORD_EVIDENCE
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


# --- group commit: evidence PUTs that arrive together share one transaction ---------------


def _pending_evidence_writes(database: Database) -> int:
    # The queue is per event loop; the test client's app runs on one.
    return sum(
        len(pending.items)
        for writers in list(database.loop_writers.values())
        for kind, pending in list(writers.pending.items())
        if kind is RECORD_EVIDENCE
    )


def _together(client: TestClient, writes: list[tuple[str, str, str]]) -> list[httpx.Response]:
    """Sends each (system, control, summary) PUT from a thread of its own while this
    process's write gate is held, waits until all are queued, then lets them go: they
    reach the database as one batch."""
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    answers: dict[int, httpx.Response] = {}

    def put(index: int, key: str, control: str, summary: str) -> None:
        answers[index] = client.put(
            f"/v1/systems/{key}/evidence/{control}",
            json={"status": "met", "summary": summary},
            headers=auth(ADMIN_SECRET),
        )

    threads = [
        threading.Thread(target=put, args=(index, *write)) for index, write in enumerate(writes)
    ]
    with database.write_gate:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while _pending_evidence_writes(database) < len(writes):
            assert time.monotonic() < deadline, "the writes never queued"
            time.sleep(0.01)
    for thread in threads:
        thread.join(30)
    return [answers[index] for index in range(len(writes))]


@pytest.fixture
def transactions(sqlite_client: TestClient) -> Iterator[list[str]]:
    """The commits of inline writes, as they happen."""
    engine = sqlite_client.app.state.database.inline_write_engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def commit(_connection: Any) -> None:
        seen.append("commit")

    event.listen(engine, "commit", commit)
    yield seen
    event.remove(engine, "commit", commit)


def test_writes_that_arrive_together_commit_together_each_as_if_alone(
    sqlite_client: TestClient, transactions: list[str]
) -> None:
    other = {**SYSTEM, "key": "other-sys", "name": "Other"}
    assert sqlite_client.post("/v1/systems", json=other, headers=auth(ADMIN_SECRET)).is_success
    writes = [("locked-sys", "monitoring", f"m{number}") for number in range(1, 7)]
    writes += [("other-sys", "monitoring", "o1"), ("locked-sys", "training", "t1")]

    answers = _together(sqlite_client, writes)

    assert [answer.status_code for answer in answers] == [200] * len(writes)
    assert transactions == ["commit"], "the writes did not share one transaction"
    # Each answer is its own version, numbered in the order the writes were queued, and
    # answered as of its own write (when it was the current one), as if written alone.
    by_summary = {answer.json()["summary"]: answer.json() for answer in answers}
    monitoring = sorted(
        (by_summary[f"m{number}"] for number in range(1, 7)), key=lambda item: item["version"]
    )
    assert [item["version"] for item in monitoring] == [1, 2, 3, 4, 5, 6]
    assert all(item["current"] for item in monitoring)
    assert (by_summary["o1"]["version"], by_summary["t1"]["version"]) == (1, 1)
    # Stored, only the last of them is current.
    history = sqlite_client.get(
        "/v1/systems/locked-sys/evidence/monitoring/history", headers=auth(ADMIN_SECRET)
    ).json()["items"]
    assert [(item["version"], item["summary"], item["current"]) for item in history] == [
        (item["version"], item["summary"], item["version"] == 6) for item in reversed(monitoring)
    ]

    # One event per write, in the order the writes were applied.
    events = sqlite_client.get(
        "/v1/events", params={"type": "evidence.recorded"}, headers=auth(ADMIN_SECRET)
    ).json()["items"]
    applied = [
        (event["system_key"], event["data"]["control"], event["data"]["version"])
        for event in events
    ]
    assert sorted(applied) == sorted(
        (key, control, by_summary[summary]["version"]) for key, control, summary in writes
    )
    assert [
        version
        for key, control, version in applied
        if control == "monitoring" and key == "locked-sys"
    ] == [1, 2, 3, 4, 5, 6]
    # A history snapshot after each write to the system, the last one its stored answer.
    snapshots = sqlite_client.get(
        "/v1/systems/locked-sys/readiness/history", headers=auth(ADMIN_SECRET)
    ).json()["items"]
    assert len(snapshots) == 1 + 7  # created, then the seven writes to it
    readiness = sqlite_client.get(
        "/v1/systems/locked-sys/readiness", headers=auth(ADMIN_SECRET)
    ).json()
    assert readiness["score"] == snapshots[0]["score"]
    statuses = {item["control"]: item["status"] for item in readiness["controls"]}
    assert statuses["monitoring"] == statuses["training"] == "met"


def test_readiness_history_of_a_batch_is_what_the_writes_alone_would_give(
    sqlite_client: TestClient,
) -> None:
    twin = {**SYSTEM, "key": "twin-sys", "name": "Twin"}
    assert sqlite_client.post("/v1/systems", json=twin, headers=auth(ADMIN_SECRET)).is_success
    controls = ("monitoring", "training", "risk_review", "fallback_process")
    answers = _together(sqlite_client, [("locked-sys", control, control) for control in controls])
    assert [answer.status_code for answer in answers] == [200] * len(controls)

    # The same writes, one at a time, to an identical system, in the order the batch
    # applied them (its events' order).
    events = sqlite_client.get(
        "/v1/events",
        params={"type": "evidence.recorded", "system": "locked-sys"},
        headers=auth(ADMIN_SECRET),
    ).json()["items"]
    for applied in events:
        control = applied["data"]["control"]
        alone = sqlite_client.put(
            f"/v1/systems/twin-sys/evidence/{control}",
            json={"status": "met", "summary": control},
            headers=auth(ADMIN_SECRET),
        )
        assert alone.status_code == 200

    def trajectory(key: str) -> list[tuple[Any, ...]]:
        snapshots = sqlite_client.get(
            f"/v1/systems/{key}/readiness/history", headers=auth(ADMIN_SECRET)
        ).json()["items"]
        return [
            (item["score"], item["level"], item["pilot_ready"], item["production_ready"])
            for item in reversed(snapshots)
        ]

    batched = trajectory("locked-sys")
    assert batched == trajectory("twin-sys")
    assert len(set(batched)) == 1 + len(controls), "each write moved the score on its own"


def test_a_write_to_an_unknown_system_fails_alone_in_its_batch(
    sqlite_client: TestClient, transactions: list[str]
) -> None:
    answers = _together(
        sqlite_client,
        [
            ("locked-sys", "monitoring", "first"),
            ("no-such-sys", "monitoring", "lost"),
            ("locked-sys", "monitoring", "second"),
        ],
    )

    assert [answer.status_code for answer in answers] == [200, 404, 200]
    assert answers[1].headers["content-type"] == "application/problem+json"
    assert "no-such-sys" in answers[1].json()["detail"]
    assert sorted([answers[0].json()["version"], answers[2].json()["version"]]) == [1, 2]
    assert transactions == ["commit"]


def test_a_batch_that_fails_is_written_again_one_write_at_a_time(
    sqlite_client: TestClient, sqlite_file: Path
) -> None:
    # The database itself refuses one of the versions: the batch's transaction fails, and
    # only that write may fail with it.
    with sqlite3.connect(sqlite_file) as connection:
        connection.execute(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON evidence WHEN NEW.summary = 'boom'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )

    answers = _together(
        sqlite_client,
        [
            ("locked-sys", "monitoring", "first"),
            ("locked-sys", "monitoring", "boom"),
            ("locked-sys", "monitoring", "second"),
        ],
    )

    assert [answer.status_code for answer in answers] == [200, 500, 200]
    assert answers[1].headers["content-type"] == "application/problem+json"
    assert "refused" not in answers[1].text  # no internals leak
    history = sqlite_client.get(
        "/v1/systems/locked-sys/evidence/monitoring/history", headers=auth(ADMIN_SECRET)
    ).json()["items"]
    written = {answers[0].json()["version"]: "first", answers[2].json()["version"]: "second"}
    assert [(item["version"], item["summary"]) for item in history] == [
        (2, written[2]),
        (1, written[1]),
    ]
    events = sqlite_client.get(
        "/v1/events", params={"type": "evidence.recorded"}, headers=auth(ADMIN_SECRET)
    ).json()["items"]
    assert [event["data"]["version"] for event in events] == [1, 2]


def test_a_batch_waits_whole_for_another_process_holding_the_write_lock(
    sqlite_client: TestClient, sqlite_file: Path, transactions: list[str]
) -> None:
    database: Database = sqlite_client.app.state.database  # type: ignore[attr-defined]
    assert database.inline_write_engine is not None
    locked_out = threading.Event()
    waited: list[str] = []

    def refused(_context: Any) -> None:  # the batch's try on the event loop found the lock
        locked_out.set()

    def commit(_connection: Any) -> None:
        waited.append("commit")

    event.listen(database.inline_write_engine, "handle_error", refused)
    event.listen(database.write_engine, "commit", commit)
    other = sqlite3.connect(sqlite_file, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    def let_go() -> None:
        # The other process commits once the batch has found its lock taken.
        locked_out.wait(30)
        time.sleep(0.3)
        other.execute("COMMIT")
        other.close()

    releaser = threading.Thread(target=let_go)
    releaser.start()
    try:
        answers = _together(
            sqlite_client,
            [("locked-sys", "monitoring", "first"), ("locked-sys", "training", "second")],
        )
    finally:
        releaser.join(30)
        event.remove(database.inline_write_engine, "handle_error", refused)
        event.remove(database.write_engine, "commit", commit)

    assert [answer.status_code for answer in answers] == [200, 200]
    assert locked_out.is_set()
    # Written whole in a worker thread, once the lock was free: one transaction.
    assert (transactions, waited) == ([], ["commit"])
    assert [answer.json()["version"] for answer in answers] == [1, 1]


def test_a_batch_that_times_out_on_another_process_lock_fails_whole_without_retries(
    sqlite_file: Path,
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{sqlite_file}",
        readiness_bootstrap_admin_key=ADMIN_SECRET,  # type: ignore[arg-type]
        sqlite_busy_timeout_ms=300,
    )
    app = create_app(settings, clock=FakeClock())
    database: Database = app.state.database
    tries: list[str] = []
    event.listen(database.write_engine, "handle_error", lambda _context: tries.append("busy"))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/v1/systems", json=SYSTEM, headers=auth(ADMIN_SECRET)).is_success
        other = sqlite3.connect(sqlite_file, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # and holds it past the busy timeout
        try:
            answers = _together(
                client,
                [("locked-sys", control, control) for control in ("monitoring", "training")],
            )
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert [answer.status_code for answer in answers] == [500, 500]
        assert {answer.headers["content-type"] for answer in answers} == {
            "application/problem+json"
        }
        # One wait for the lock, for the whole batch: retrying each write would wait again.
        assert tries == ["busy"]
        # Nothing was written, and the lock is free again for the next write.
        assert _put_evidence(client, "after").json()["version"] == 1
    database.dispose()


def test_the_database_file_catches_up_with_the_log_in_the_background(
    sqlite_client: TestClient, sqlite_file: Path
) -> None:
    # Commits go to the write-ahead log; a thread of the app copies them into the database
    # file, so writers no longer do it inside their own commits.
    assert _put_evidence(sqlite_client, "logged").status_code == 200

    def in_database_file() -> int:
        # immutable=1 reads the database file alone, ignoring the log.
        with closing(sqlite3.connect(f"file:{sqlite_file}?immutable=1", uri=True)) as file:
            found = file.execute("SELECT count(*) FROM evidence WHERE summary = 'logged'")
            return int(found.fetchone()[0])

    deadline = time.monotonic() + 30
    while in_database_file() == 0:
        assert time.monotonic() < deadline, "the log was never copied into the database"
        time.sleep(0.05)
