"""GET /metrics/systems: each system's readiness score and gate readiness, for Prometheus,
behind a viewer key unless READINESS_PUBLIC_SYSTEM_METRICS=true."""

from datetime import timedelta

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import FakeClock, auth
from tests.factories import confirm_tier, make_system, record_evidence
from tests.metrics.test_request_metrics import samples

Headers = dict[str, str]


def scrape(client: TestClient, headers: Headers) -> str:
    response = client.get("/metrics/systems", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def test_system_metrics_need_a_viewer_key(
    client: TestClient, admin: Headers, viewer: Headers
) -> None:
    make_system(client, admin, key="lender", tier="high")
    for headers in ({}, auth("rdy_not_a_key")):
        refused = client.get("/metrics/systems", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/unauthorized"
        assert "lender" not in refused.text
    answered = client.get("/metrics/systems", headers=viewer)
    assert answered.status_code == 200
    assert 'system="lender"' in answered.text
    # Keyed, so a shared cache must not keep it for the next caller.
    assert answered.headers["cache-control"] == "no-store"


def test_system_metrics_are_public_with_the_setting(
    client: TestClient, admin: Headers, database_url: str, clock: FakeClock
) -> None:
    make_system(client, admin, key="lender", tier="high")
    public = create_app(
        Settings(database_url=database_url, readiness_public_system_metrics=True), clock=clock
    )
    try:
        with TestClient(public) as anonymous:
            text = scrape(anonymous, {})
            assert 'readiness_score{system="lender",tier="high",stage="proposed"} 17.6' in text
            # The setting opens this scrape only, nothing else.
            assert anonymous.get("/v1/systems/lender/readiness").status_code == 401
            assert anonymous.get("/v1/systems/lender/badge.svg").status_code == 401
    finally:
        public.state.database.dispose()


def test_each_systems_score_and_gates(client: TestClient, admin: Headers, viewer: Headers) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    make_system(client, admin, key="lender", tier="high")
    text = scrape(client, viewer)
    assert 'readiness_score{system="lender",tier="high",stage="proposed"} 17.6' in text
    assert (
        'readiness_gate_ready{system="drafty",tier="minimal",stage="proposed",gate="pilot"} 1'
        in text
    )
    assert (
        'readiness_gate_ready{system="lender",tier="high",stage="proposed",gate="pilot"} 0' in text
    )
    # Only the per-system series: the portfolio gauges and request counts are on /metrics.
    assert {name for name, _ in samples(text)} == {"readiness_score", "readiness_gate_ready"}


def test_system_metrics_follow_time(
    client: TestClient, admin: Headers, viewer: Headers, clock: FakeClock
) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    tomorrow = (clock.now + timedelta(days=1)).isoformat()
    for control in ("data_rules", "access_boundaries", "support_plan"):
        record_evidence(client, admin, key="drafty", control=control, expires_at=tomorrow)
    for control in ("monitoring", "training", "workflow"):
        record_evidence(client, admin, key="drafty", control=control)
    confirm_tier(client, admin, key="drafty")
    gauge = (
        'readiness_gate_ready{system="drafty",tier="minimal",stage="proposed",gate="production"}'
    )
    assert f"{gauge} 1" in scrape(client, viewer)
    clock.advance(days=2)
    assert f"{gauge} 0" in scrape(client, viewer)
