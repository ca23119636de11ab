"""Both metrics scrapes and the reports read a per-process mirror of stored readiness (built
at start-up, before each test here unless said otherwise) that reads only what was stored
since its last look: through the API, it follows writes, concurrent writers, pilots and
time. Its counts are compared with the aggregate queries' in test_counts.py."""

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event

from app.db import write_transaction
from app.policies.service import default_policy_document
from app.readiness import service as readiness_service
from app.systems.service import lock_system
from tests.conftest import FakeClock
from tests.factories import make_system, meet_every_control, transition

Headers = dict[str, str]
OVERRIDE = {"justification": "Board decision, minute 7: ship before the audit"}


def reports(client: TestClient, headers: Headers, **params: Any) -> dict[str, Any]:
    """The portfolio and gaps reports without their timestamps."""
    body = {}
    for name in ("portfolio", "gaps"):
        response = client.get(f"/v1/reports/{name}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body[name] = {k: v for k, v in response.json().items() if k != "generated_at"}
    return body


def gauges(
    client: TestClient, headers: Headers
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Both scrapes: the portfolio gauges of /metrics and each system's of /metrics/systems."""
    scraped = {}
    for path in ("/metrics", "/metrics/systems"):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                scraped[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return scraped


def score(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], key: str) -> float:
    (value,) = [v for (name, labels), v in scrape.items() if ("system", key) in labels and
                name == "readiness_score"]  # fmt: skip
    return value


def warm(app: FastAPI) -> None:
    """Build the app's mirror now (apps started with the warm-up off have none)."""
    app.state.mirror_warmup.start()
    assert app.state.mirror_warmup.wait(timeout=30)


def test_metrics_follow_writes_after_the_first_scrape(
    client: TestClient, admin: Headers, clock: FakeClock
) -> None:
    make_system(client, admin, key="lender", tier="high")
    before = gauges(client, admin)
    assert score(before, "lender") == 17.6
    meet_every_control(client, admin, key="lender")
    make_system(client, admin, key="drafty", tier="minimal")
    after = gauges(client, admin)
    assert score(after, "lender") == 100.0
    assert score(after, "drafty") == 17.6
    stage = frozenset({("stage", "proposed"), ("tier", "high")})
    assert after[("readiness_systems", stage)] == 1
    assert transition(client, admin, key="lender", to="pilot").status_code == 201
    moved = gauges(client, admin)
    labels = frozenset(
        {("system", "lender"), ("tier", "high"), ("stage", "pilot"), ("gate", "production")}
    )
    assert ("readiness_gate_ready", labels) in moved
    assert not any(("system", "lender") in s and ("stage", "proposed") in s for _, s in moved)


def test_a_store_committed_after_a_look_is_seen_by_the_next(
    app: FastAPI, client: TestClient, admin: Headers, clock: FakeClock
) -> None:
    """A writer still open while a scrape looks is read by the scrape after it commits, also
    when (PostgreSQL) a later writer committed before that look."""
    make_system(client, admin, key="first", tier="high")
    assert score(gauges(client, admin), "first") == 17.6
    database = app.state.database
    concurrent = database.write_engine.dialect.name == "postgresql"
    with write_transaction(database) as writer:
        system = lock_system(writer, "first", now=clock.now)
        system.purpose = None  # one field-satisfied control fewer
        readiness_service.refresh(writer, system, now=clock.now)
        writer.flush()
        if concurrent:  # SQLite writers take turns: a second one would wait for this one
            make_system(client, admin, key="second", tier="minimal")
        # The admin key was last used at this very time, so checking it writes nothing
        # (its last_used_at refresh would wait for this writer).
        scrape = gauges(client, admin)
        assert score(scrape, "first") == 17.6  # not committed yet
        if concurrent:
            assert score(scrape, "second") == 17.6
    assert score(gauges(client, admin), "first") == 11.8


def test_stuck_pilots_follow_pilots_policy_and_time_after_the_first_look(
    client: TestClient, admin: Headers, viewer: Headers, clock: FakeClock
) -> None:
    """The scrape counts stuck pilots from the mirror (a pilot's creation stores no
    readiness: the mirror follows pilot events); the portfolio lists them by query."""
    make_system(client, admin, key="lender", tier="high")
    meet_every_control(client, admin, key="lender")
    assert transition(client, admin, key="lender", to="pilot").status_code == 201

    def start(days: int) -> int:
        response = client.post(
            "/v1/systems/lender/pilots",
            json={
                "name": f"{days}-day trial",
                "planned_end": (clock.now + timedelta(days=days)).isoformat(),
                "criteria": [{"metric": "precision", "op": ">=", "target": 0.9}],
            },
            headers=admin,
        )
        assert response.status_code == 201, response.text
        pilot_id: int = response.json()["id"]
        return pilot_id

    def stuck() -> float:
        scraped = gauges(client, admin)[("readiness_stuck_pilots", frozenset())]
        listed = len(reports(client, viewer)["portfolio"]["stuck_pilots"])
        assert scraped == listed
        return scraped

    short, long = start(days=1), start(days=30)
    assert stuck() == 0
    clock.advance(days=2)  # time alone: the short one overruns its planned end
    assert stuck() == 1
    assert client.post(f"/v1/pilots/{short}/conclude", headers=admin).status_code == 200
    assert stuck() == 0
    start(days=200)  # ends long after the policy's 90 days
    clock.advance(days=29)
    assert stuck() == 1  # the long one
    # A policy with a shorter max_pilot_days makes the third one stuck at once.
    stricter = {**default_policy_document(), "max_pilot_days": 20, "activate": True}
    response = client.post("/v1/policies", json=stricter, headers=admin)
    assert response.status_code == 201, response.text
    assert stuck() == 2
    assert client.post(f"/v1/pilots/{long}/conclude", headers=admin).status_code == 200
    assert stuck() == 1


def test_a_scrape_reads_no_pilot_when_none_changed(
    app: FastAPI, client: TestClient, admin: Headers, clock: FakeClock
) -> None:
    """Counting stuck pilots costs a scrape nothing per pilot: only pilots changed since the
    last look are read."""
    make_system(client, admin, key="lender", tier="high")
    meet_every_control(client, admin, key="lender")
    assert transition(client, admin, key="lender", to="pilot").status_code == 201
    for days in (1, 30):
        client.post(
            "/v1/systems/lender/pilots",
            json={
                "name": f"{days}-day trial",
                "planned_end": (clock.now + timedelta(days=days)).isoformat(),
                "criteria": [{"metric": "precision", "op": ">=", "target": 0.9}],
            },
            headers=admin,
        )
    clock.advance(days=2)
    assert "\nreadiness_stuck_pilots 1\n" in client.get("/metrics").text

    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])  # (connection, cursor, statement, ...)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        assert "\nreadiness_stuck_pilots 1\n" in client.get("/metrics").text
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert statements  # the scrape did look for changes
    assert not [statement for statement in statements if "pilots" in statement]
