import xml.etree.ElementTree as ElementTree

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import FakeClock
from tests.factories import make_system, meet_every_control

SVG = "{http://www.w3.org/2000/svg}"


def badge_text(response_text: str) -> list[str]:
    root = ElementTree.fromstring(response_text)  # well-formed SVG, or this raises
    assert root.tag == f"{SVG}svg"
    return [text.text or "" for text in root.iter(f"{SVG}text")]


def test_badge_shows_level_and_score(
    client: TestClient, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    make_system(client, admin, key="lender", tier="high")
    meet_every_control(client, admin, key="drafty")

    response = client.get("/v1/systems/drafty/badge.svg", headers=viewer)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert badge_text(response.text) == ["readiness", "production ready 100"]

    lender = client.get("/v1/systems/lender/badge.svg", headers=viewer)
    assert badge_text(lender.text) == ["readiness", "not ready 17.6"]
    assert "#c62828" in lender.text  # red for not ready


def test_badge_needs_a_key_unless_public(
    client: TestClient, admin: dict[str, str], database_url: str, clock: FakeClock
) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    refused = client.get("/v1/systems/drafty/badge.svg")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    missing = client.get("/v1/systems/nope/badge.svg", headers=admin)
    assert missing.status_code == 404

    public = create_app(
        Settings(database_url=database_url, readiness_public_badges=True), clock=clock
    )
    try:
        with TestClient(public) as anonymous:
            response = anonymous.get("/v1/systems/drafty/badge.svg")
            assert response.status_code == 200
            assert badge_text(response.text)[0] == "readiness"
            # Public badges open the badge only, nothing else.
            assert anonymous.get("/v1/systems/drafty/readiness").status_code == 401
    finally:
        public.state.database.dispose()
