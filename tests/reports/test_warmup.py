"""The readiness mirror is built on a background thread at start-up: until it is, reports
and both metrics scrapes answer from the database with the same numbers; once it is, they
read it; a failed build is retried; shutdown stops the build."""

import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import read_transaction
from app.main import create_app
from app.reports import warmup as warmup_module
from app.reports.mirror import BuildStopped, Mirror, mirror_for
from tests.conftest import FakeClock, alembic_config, warmup_threads
from tests.factories import (
    confirm_tier,
    make_system,
    meet_every_control,
    record_evidence,
    transition,
)
from tests.reports.test_mirror import OVERRIDE, reports, warm

Headers = dict[str, str]


def readiness_gauges(client: TestClient, headers: Headers) -> str:
    """Both scrapes without the request metrics, which every call changes."""
    body = client.get("/metrics").text + client.get("/metrics/systems", headers=headers).text
    return "\n".join(line for line in body.splitlines() if "readiness_http_" not in line)


def every_report(client: TestClient, headers: Headers) -> dict[str, Any]:
    answers = {"unfiltered": reports(client, headers)}
    for tier in ("minimal", "limited", "high", "critical"):
        answers[tier] = reports(client, headers, risk_tier=tier)
    answers["metrics"] = readiness_gauges(client, headers)
    return answers


def mirrored_keys(app: FastAPI) -> set[str] | None:
    """The keys in the app's built mirror, or None while it has none."""
    with read_transaction(app.state.database) as session:
        mirror = mirror_for(session)
    return None if mirror is None else {entry.key for entry in mirror.entries.values()}


@pytest.mark.parametrize("mirror_warmup", [False])
def test_answers_before_the_mirror_is_built_match_those_after(
    app: FastAPI, client: TestClient, admin: Headers, viewer: Headers, clock: FakeClock
) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    make_system(client, admin, key="helpdesk", tier="limited")
    make_system(client, admin, key="lender", tier="high")
    make_system(client, admin, key="care", tier="critical")
    meet_every_control(client, admin, key="lender")
    assert transition(client, admin, key="lender", to="pilot").status_code == 201
    in_a_week = (clock.now + timedelta(days=7)).isoformat()
    for control in ("data_rules", "access_boundaries", "support_plan"):
        record_evidence(client, admin, key="drafty", control=control, expires_at=in_a_week)
    for control in ("monitoring", "training", "workflow"):
        record_evidence(client, admin, key="drafty", control=control)
    confirm_tier(client, admin, key="drafty")
    assert transition(client, admin, key="drafty", to="production").status_code == 201
    assert transition(client, admin, key="care", to="production", override=OVERRIDE).status_code
    clock.advance(days=8)  # drafty's evidence expired: its stored answer is stale, it drifts

    cold = every_report(client, viewer)
    assert not app.state.mirror_warmup.built
    assert mirrored_keys(app) is None  # answered by the aggregate queries
    assert cold["unfiltered"]["portfolio"]["drifted"] == 2
    assert "\nreadiness_drifted_systems 2" in cold["metrics"]
    drafty = 'system="drafty",tier="minimal",stage="production"'
    assert f'readiness_gate_ready{{{drafty},gate="production"}} 0' in cold["metrics"]

    warm(app)
    assert every_report(client, viewer) == cold

    # From now on the reports read the mirror: a system registered since the build is in
    # it only once a report has looked.
    make_system(client, admin, key="newcomer", tier="high")
    assert "newcomer" not in (mirrored_keys(app) or ())
    assert reports(client, viewer)["portfolio"]["systems"] == 5
    assert "newcomer" in (mirrored_keys(app) or ())


def test_warm_at_start_up(app: FastAPI, client: TestClient) -> None:
    assert app.state.mirror_warmup.built
    assert mirrored_keys(app) == set()  # the emptied database


def test_a_stopped_build_raises_and_publishes_nothing(
    app: FastAPI, client: TestClient, admin: Headers, clock: FakeClock
) -> None:
    make_system(client, admin, key="lender", tier="high")
    stop = threading.Event()
    stop.set()
    with read_transaction(app.state.database) as session, pytest.raises(BuildStopped):
        Mirror().build(session, now=clock.now, stop=stop)
    assert mirrored_keys(app) == set()  # still the one built at start-up


def unmigrated_app(tmp_path: Path) -> FastAPI:
    return create_app(Settings(database_url=f"sqlite:///{tmp_path / 'later.db'}"))


def test_a_failed_build_is_logged_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(warmup_module, "RETRY_FIRST", 0.01)
    monkeypatch.setattr(warmup_module, "RETRY_MAX", 0.05)
    app = unmigrated_app(tmp_path)
    failed = threading.Event()

    class Failures(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "warm-up failed" in record.getMessage():
                failed.set()

    handler = Failures()
    logging.getLogger("app").addHandler(handler)
    try:
        with TestClient(app) as client:
            assert failed.wait(timeout=30)  # no tables yet
            assert not app.state.mirror_warmup.built
            assert client.get("/healthz").status_code == 200
            command.upgrade(alembic_config(app.state.settings.database_url), "head")
            assert app.state.mirror_warmup.wait(timeout=30)
    finally:
        logging.getLogger("app").removeHandler(handler)
        app.state.database.dispose()
    assert any("readiness mirror built" in record.getMessage() for record in caplog.records)


def test_shutdown_stops_a_warm_up_waiting_to_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wait that shutdown did not cut short would outlast the join, leaving the thread.
    monkeypatch.setattr(warmup_module, "RETRY_FIRST", 3600.0)
    app = unmigrated_app(tmp_path)
    with TestClient(app):
        assert warmup_threads()
    assert not warmup_threads()
    assert not app.state.mirror_warmup.built
    app.state.database.dispose()


def test_no_warm_up_when_turned_off(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, readiness_mirror_warmup=False))
    with TestClient(app):
        assert not warmup_threads()
    assert not app.state.mirror_warmup.built
    app.state.database.dispose()
