"""Time-driven readiness events (app.readiness.expiry): when time alone turns a gate, the
stored answer is refreshed and `readiness.changed` (and, in production, `system.drifted`)
appended once, however many workers run the scheduler."""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlmodel import col

from app.db import write_transaction
from app.models import ReadinessSnapshot
from app.readiness import service as readiness_service
from app.readiness.expiry import store_expired
from tests.conftest import ADMIN_SECRET, START, FakeClock, auth
from tests.factories import confirm_tier, readiness, record_evidence, transition
from tests.readiness.clocked_app import FileClock
from tests.serving import Server, free_port, serve

Headers = dict[str, str]

# A minimal-tier system is production-ready with these six controls met (and its three
# system fields); support_plan is required for production, data_quality for nothing.
READY_CONTROLS = ("data_rules", "access_boundaries", "monitoring", "training", "workflow")
EXPIRES = START + timedelta(days=1)


def make_minimal(client: TestClient, headers: Headers, *, key: str) -> None:
    response = client.post(
        "/v1/systems",
        json={
            "key": key,
            "name": f"System {key}",
            "purpose": "Drafts replies.",
            "scope": "A person sends them.",
            "owner": {"team": "support", "contact": "support@example.com"},
            "impact_areas": ["drafting"],
            "oversight": "human_reviews_all",
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    confirm_tier(client, auth(ADMIN_SECRET), key=key)  # a person, not the pipeline


def ready_until_tomorrow(
    client: TestClient,
    headers: Headers,
    *,
    key: str,
    stage: str = "production",
    expires: datetime = EXPIRES,
) -> None:
    """A minimal-tier system in `stage` whose production gate closes at `expires`, when its
    support plan's evidence expires."""
    make_minimal(client, headers, key=key)
    for control in READY_CONTROLS:
        record_evidence(client, headers, key=key, control=control)
    record_evidence(
        client, headers, key=key, control="support_plan", expires_at=expires.isoformat()
    )
    for to in ("pilot", "production")[: ("pilot", "production").index(stage) + 1]:
        assert transition(client, headers, key=key, to=to).status_code == 201
    assert readiness(client, headers, key=key)["gates"]["production"]["ready"] is True


def events(client: TestClient, headers: Headers, *types: str) -> list[dict[str, Any]]:
    """The events of these types, in the log's order."""
    found: list[dict[str, Any]] = []
    for kind in types:
        page = client.get("/v1/events", params={"type": kind, "limit": 200}, headers=headers)
        assert page.status_code == 200, page.text
        found.extend(page.json()["items"])
    return sorted(found, key=lambda event: int(event["id"]))


TIME_TYPES = ("readiness.changed", "system.drifted")


def test_evidence_going_stale_in_production_is_told_once(
    client: TestClient, app: FastAPI, pipeline: Headers, clock: FakeClock
) -> None:
    ready_until_tomorrow(client, pipeline, key="drafter")
    database = app.state.database
    clock.now = EXPIRES - timedelta(microseconds=1)
    assert store_expired(database, clock=clock) == 0
    history = client.get("/v1/systems/drafter/readiness/history", headers=pipeline).json()

    clock.now = EXPIRES + timedelta(seconds=7)
    assert store_expired(database, clock=clock) == 1
    assert store_expired(database, clock=clock) == 0  # stored: nothing left to do

    answer = readiness(client, pipeline, key="drafter")
    production = answer["gates"]["production"]
    assert production["ready"] is False
    assert {item["code"] for item in production["blocking"]} >= {"control_stale"}
    changed, drifted = events(client, pipeline, *TIME_TYPES)
    assert changed["type"] == "readiness.changed"
    assert changed["system_key"] == "drafter"
    assert changed["data"] == {
        "gate": "production",
        "ready": False,
        "blocking": production["blocking"],
    }
    assert changed["actor"] == {
        "kind": "service",
        "id": None,
        "name": "scheduler",
        "issuer": None,
        "subject": None,
    }
    assert changed["occurred_at"] == answer["evaluated_at"]
    assert drifted["type"] == "system.drifted"
    assert drifted["system_key"] == "drafter"
    assert drifted["data"] == {"gate": "production", "blocking": production["blocking"]}
    assert drifted["occurred_at"] == changed["occurred_at"]
    assert drifted["id"] > changed["id"]

    # The answer was stored anew, with its history snapshot, by the pass.
    assert answer["evaluated_at"] == (EXPIRES + timedelta(seconds=7)).isoformat().replace(
        "+00:00", "Z"
    )
    after = client.get("/v1/systems/drafter/readiness/history", headers=pipeline).json()
    assert len(after["items"]) == len(history["items"]) + 1
    assert after["items"][0]["production_ready"] is False
    listed = client.get("/v1/systems", params={"production_ready": "false"}, headers=pipeline)
    assert [item["key"] for item in listed.json()["items"]] == ["drafter"]


@pytest.mark.parametrize(
    "write",
    ["evidence", "patch", "waiver", "approval"],
)
def test_a_write_before_the_next_pass_tells_the_time_change_first(
    client: TestClient,
    app: FastAPI,
    pipeline: Headers,
    approver: Headers,
    viewer: Headers,
    clock: FakeClock,
    write: str,
) -> None:
    """A write that reaches a system after time turned its gate, before the scheduler's
    next pass, stores and tells that change before its own: the write's re-evaluation does
    not swallow it, and the pass that follows finds nothing left."""
    ready_until_tomorrow(client, pipeline, key="drafter")
    clock.now = EXPIRES + timedelta(seconds=3)
    if write == "evidence":
        response = client.put(
            "/v1/systems/drafter/evidence/data_quality", json={"status": "met"}, headers=pipeline
        )
    elif write == "patch":
        response = client.patch(
            "/v1/systems/drafter", json={"description": "Drafts replies."}, headers=pipeline
        )
    elif write == "waiver":
        response = client.post(
            "/v1/systems/drafter/waivers",
            json={
                "control": "training",
                "justification": "Operators trained on the previous version; refresh booked",
                "expires_at": (EXPIRES + timedelta(days=30)).isoformat(),
            },
            headers=approver,
        )
    else:
        response = client.post(
            "/v1/systems/drafter/approvals",
            json={"target_stage": "production", "decision": "approve", "comment": "Risk OK"},
            headers=approver,
        )
    assert response.status_code in (200, 201), response.text
    assert store_expired(app.state.database, clock=clock) == 0

    changed, drifted = events(client, viewer, *TIME_TYPES)
    assert (changed["type"], changed["data"]["gate"], changed["data"]["ready"]) == (
        "readiness.changed",
        "production",
        False,
    )
    assert drifted["type"] == "system.drifted"
    assert changed["actor"]["name"] == "scheduler"
    newest = client.get("/v1/events", params={"system": "drafter", "limit": 200}, headers=viewer)
    written = newest.json()["items"][-1]
    assert written["id"] > drifted["id"]  # the write's own event comes after the time change's
    assert written["actor"]["name"] != "scheduler"


def test_no_drift_outside_production(
    client: TestClient, app: FastAPI, pipeline: Headers, clock: FakeClock
) -> None:
    ready_until_tomorrow(client, pipeline, key="piloted", stage="pilot")
    clock.now = EXPIRES
    assert store_expired(app.state.database, clock=clock) == 1
    [changed] = events(client, pipeline, *TIME_TYPES)
    assert changed["type"] == "readiness.changed"
    assert changed["data"]["gate"] == "production"


def test_a_change_that_turns_no_gate_is_stored_without_an_event(
    client: TestClient, app: FastAPI, pipeline: Headers, clock: FakeClock, engine: Engine
) -> None:
    ready_until_tomorrow(client, pipeline, key="steady")
    # Renewed for a year; data_quality, required for nothing, expires tomorrow.
    record_evidence(client, pipeline, key="steady", control="support_plan")
    record_evidence(
        client, pipeline, key="steady", control="data_quality", expires_at=EXPIRES.isoformat()
    )
    before = readiness(client, pipeline, key="steady")
    clock.now = EXPIRES
    assert store_expired(app.state.database, clock=clock) == 1
    assert events(client, pipeline, *TIME_TYPES) == []
    after = readiness(client, pipeline, key="steady")
    assert after["gates"]["production"]["ready"] is True
    assert after["score"] < before["score"]
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT score, readiness_valid_until FROM systems WHERE key = 'steady'")
        ).one()
    assert stored.score == after["score"]
    # The next limit is the tier's freshness of the evidence, months away.
    assert store_expired(app.state.database, clock=clock) == 0


def test_a_lapsed_waiver_turns_the_gate(
    client: TestClient,
    app: FastAPI,
    pipeline: Headers,
    approver: Headers,
    clock: FakeClock,
) -> None:
    make_minimal(client, pipeline, key="waived")
    for control in READY_CONTROLS:
        record_evidence(client, pipeline, key="waived", control=control)
    granted = client.post(
        "/v1/systems/waived/waivers",
        json={
            "control": "support_plan",
            "justification": "Plan is being rewritten.",
            "expires_at": EXPIRES.isoformat(),
        },
        headers=approver,
    )
    assert granted.status_code == 201, granted.text
    assert readiness(client, pipeline, key="waived")["gates"]["production"]["ready"] is True
    clock.now = EXPIRES
    assert store_expired(app.state.database, clock=clock) == 1
    [changed] = events(client, pipeline, *TIME_TYPES)
    assert changed["data"]["ready"] is False
    assert {item["control"] for item in changed["data"]["blocking"]} >= {"support_plan"}


def test_many_systems_are_stored_a_batch_at_a_time(
    client: TestClient, app: FastAPI, pipeline: Headers, clock: FakeClock
) -> None:
    for number in range(5):
        ready_until_tomorrow(client, pipeline, key=f"sys-{number}")
    clock.now = EXPIRES
    assert store_expired(app.state.database, clock=clock, size=2) == 5
    told = events(client, pipeline, *TIME_TYPES)
    assert sorted((event["system_key"], event["type"]) for event in told) == sorted(
        (f"sys-{number}", kind) for number in range(5) for kind in TIME_TYPES
    )


def test_a_stale_answer_of_other_rules_is_left_to_its_reevaluation(
    client: TestClient, app: FastAPI, pipeline: Headers, clock: FakeClock, engine: Engine
) -> None:
    ready_until_tomorrow(client, pipeline, key="older")
    with engine.begin() as connection:
        connection.execute(text("UPDATE systems SET readiness_rules_version = 0"))
    clock.now = EXPIRES
    assert store_expired(app.state.database, clock=clock) == 0
    assert events(client, pipeline, *TIME_TYPES) == []


def test_a_system_another_pass_holds_is_skipped_then_found_stored(
    client: TestClient, app: FastAPI, pipeline: Headers, clock: FakeClock, engine: Engine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writers take turns: a second pass cannot start while one holds")
    ready_until_tomorrow(client, pipeline, key="held")
    clock.now = EXPIRES
    database = app.state.database
    with write_transaction(database) as holding:
        [change] = readiness_service.store_expired_batch(holding, now=clock.now)
        assert change.system_key == "held"
        # Another worker's pass, while the first holds the row: nothing for it.
        with write_transaction(database) as other:
            assert readiness_service.store_expired_batch(other, now=clock.now) == []
    # Committed: the answer holds past now, so no pass finds it again.
    assert store_expired(database, clock=clock) == 0


@pytest.fixture
def app_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.node.name.startswith("test_the_scheduler_"):
        return {"readiness_expiry_events": True, "readiness_expiry_interval_s": 0.05}
    return {}


def test_the_scheduler_runs_in_the_app(
    client: TestClient, pipeline: Headers, clock: FakeClock
) -> None:
    ready_until_tomorrow(client, pipeline, key="watched")
    clock.now = EXPIRES
    # Waits for the scheduler's thread, not for time to pass: the clock moved already.
    deadline = time.monotonic() + 10
    while len(told := events(client, pipeline, *TIME_TYPES)) < 2:
        assert time.monotonic() < deadline, "no pass of the scheduler stored the change"
        time.sleep(0.05)
    time.sleep(0.3)  # a few more passes: they find nothing
    assert [event["type"] for event in events(client, pipeline, *TIME_TYPES)] == [
        event["type"] for event in told
    ]
    assert [event["type"] for event in told] == list(TIME_TYPES)


# --- several processes ------------------------------------------------------------------


@contextmanager
def clocked_server(env: dict[str, str], scratch: Path, name: str) -> Iterator[Server]:
    """A server process of the app whose clock is the file `env` names."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.readiness.clocked_app:create",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with serve(command, env, port, scratch / f"{name}.log") as server:
        yield server


def stored_since(engine: Engine, moment: datetime) -> int:
    """How many history snapshots were recorded at `moment` or later."""
    query = select(func.count()).where(col(ReadinessSnapshot.recorded_at) >= moment)
    with engine.connect() as connection:
        count: int = connection.execute(query).scalar_one()
    return count


@pytest.mark.slow
def test_two_processes_running_the_scheduler_tell_each_change_once(
    client: TestClient, pipeline: Headers, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    # Two waves of systems, in production or in pilot, whose gates close an hour apart;
    # stored two a transaction, so the two processes' passes interleave.
    waves = 2
    per_wave = 16
    for wave in range(waves):
        for number in range(per_wave):
            stage = "production" if number % 2 == 0 else "pilot"
            expires = EXPIRES + timedelta(hours=wave)
            key = f"w{wave}-{number}"
            ready_until_tomorrow(client, pipeline, key=key, stage=stage, expires=expires)
    clock = FileClock(tmp_path / "clock")
    clock.set(START)
    env = {
        "DATABASE_URL": database_url,
        "READINESS_TEST_CLOCK_FILE": str(clock.path),
        "READINESS_TEST_EXPIRY_BATCH": "2",
        "READINESS_EXPIRY_INTERVAL_S": "0.05",
        "READINESS_MIRROR_WARMUP": "false",
        "LOG_LEVEL": "warning",
    }
    with (
        clocked_server(env, tmp_path, "first") as first,
        clocked_server(env, tmp_path, "second") as second,
    ):
        for wave in range(waves):
            clock.set(EXPIRES + timedelta(hours=wave, seconds=1))
            expected = (wave + 1) * (per_wave + per_wave // 2)
            deadline = time.monotonic() + 30
            while len(events(client, pipeline, *TIME_TYPES)) < expected:
                assert time.monotonic() < deadline, "the schedulers did not tell the change"
                time.sleep(0.05)
        time.sleep(0.5)  # both go on passing, and find nothing more to tell
        logs = first.log() + second.log()

    told = events(client, pipeline, *TIME_TYPES)
    assert sorted((event["system_key"], event["type"]) for event in told) == sorted(
        (f"w{wave}-{number}", kind)
        for wave in range(waves)
        for number in range(per_wave)
        for kind in (TIME_TYPES if number % 2 == 0 else TIME_TYPES[:1])
    )
    # Each answer was stored anew once, not once per process.
    assert stored_since(engine, EXPIRES) == waves * per_wave
    assert "Traceback" not in logs, logs
