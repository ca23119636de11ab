"""GET /metrics: portfolio gauges and request metrics only, public, and the same size
whatever the number of systems (each system's series are at /metrics/systems)."""

from fastapi.testclient import TestClient

from tests.factories import make_system, record_evidence
from tests.metrics.test_request_metrics import samples

Headers = dict[str, str]
TIERS = ("minimal", "limited", "high", "critical")


def scrape(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def register(client: TestClient, admin: Headers, *, first: int, count: int) -> list[str]:
    """`count` systems over every tier, each with some evidence recorded."""
    keys = []
    for number in range(first, first + count):
        key = f"system-{number:03d}"
        make_system(client, admin, key=key, tier=TIERS[number % len(TIERS)])
        record_evidence(client, admin, key=key, control="training")
        keys.append(key)
    return keys


def test_portfolio_gauges_by_stage_and_tier_without_a_key(
    client: TestClient, admin: Headers
) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    make_system(client, admin, key="lender", tier="high")
    text = scrape(client)
    assert 'readiness_systems{stage="proposed",tier="high"} 1' in text
    assert 'readiness_systems{stage="proposed",tier="minimal"} 1' in text


def test_no_series_per_system(client: TestClient, admin: Headers) -> None:
    keys = register(client, admin, first=1, count=4)
    scraped = samples(scrape(client))
    names = {name for name, _ in scraped}
    assert not names & {"readiness_score", "readiness_gate_ready"}
    assert not [labels for _, labels in scraped if "system" in dict(labels)]
    for key in keys:
        assert key not in scrape(client)


def test_series_count_does_not_grow_with_the_number_of_systems(
    client: TestClient, admin: Headers
) -> None:
    # Every call the test makes is made once first, so the request metrics have their
    # series (one per route, method and status) before the count is taken.
    register(client, admin, first=1, count=4)
    scrape(client)
    few = samples(scrape(client))
    register(client, admin, first=5, count=40)
    many = samples(scrape(client))
    systems = sum(value for (name, _), value in many.items() if name == "readiness_systems")
    assert systems == 44
    assert len(many) == len(few)
    assert many.keys() == few.keys()
