"""CORS (OWASP API8:2023, security misconfiguration): off unless READINESS_CORS_ORIGINS
names an allow-list, and then only for exactly those origins."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine

from app.config import Settings
from app.main import create_app
from tests.conftest import ADMIN_SECRET, FakeClock, _empty

ALLOWED = ("https://dash.example.com", "http://127.0.0.1:3000")
REFUSED = (
    "https://evil.example",
    "http://dash.example.com",  # another scheme is another origin
    "https://dash.example.com.evil.example",
    "https://dash.example.com:8443",
    "null",
)


def preflight(client: TestClient, origin: str, method: str = "POST") -> dict[str, str]:
    response = client.options(
        "/v1/systems",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    return dict(response.headers)


def cors_headers(headers: dict[str, str]) -> set[str]:
    return {name for name in headers if name.lower().startswith("access-control-")}


def test_cors_is_off_by_default(client: TestClient, viewer: dict[str, str]) -> None:
    for origin in (*ALLOWED, *REFUSED):
        assert cors_headers(preflight(client, origin)) == set(), origin
        for path in ("/v1/controls", "/healthz", "/v1/nothing-here"):
            response = client.get(path, headers={**viewer, "Origin": origin})
            assert cors_headers(dict(response.headers)) == set(), (origin, path)


@pytest.fixture
def cors_client(database_url: str, engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    _empty(engine)
    settings = Settings(
        database_url=database_url,
        readiness_bootstrap_admin_key=ADMIN_SECRET,  # type: ignore[arg-type]
        readiness_cors_origins=" , ".join(ALLOWED),
    )
    application = create_app(settings, clock=clock)
    with TestClient(application, raise_server_exceptions=False) as test_client:
        yield test_client
    application.state.database.dispose()


def test_allowed_origins_get_cors_headers(cors_client: TestClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_SECRET}"}
    for origin in ALLOWED:
        answer = preflight(cors_client, origin)
        assert answer["access-control-allow-origin"] == origin
        assert "POST" in answer["access-control-allow-methods"]
        allowed_headers = answer["access-control-allow-headers"].lower()
        assert {"authorization", "idempotency-key"} <= set(allowed_headers.split(", "))
        # Keys travel in a header: browsers are never told to send cookies.
        assert "access-control-allow-credentials" not in answer
        # Preflight answers are responses like any other.
        assert answer["x-content-type-options"] == "nosniff"
        assert answer["x-request-id"]

        response = cors_client.get("/v1/controls", headers={**admin, "Origin": origin})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert "Origin" in response.headers["vary"]
        exposed = response.headers["access-control-expose-headers"]
        assert {"ETag", "Location", "X-Request-ID"} <= set(exposed.split(", "))


def test_other_origins_get_none(cors_client: TestClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_SECRET}"}
    for origin in REFUSED:
        answer = preflight(cors_client, origin)
        assert "access-control-allow-origin" not in answer, origin
        response = cors_client.get("/v1/controls", headers={**admin, "Origin": origin})
        assert "access-control-allow-origin" not in response.headers, origin
    # Methods the API does not serve are not offered either.
    assert (
        "TRACE" not in preflight(cors_client, ALLOWED[0], "TRACE")["access-control-allow-methods"]
    )


def test_the_allow_list_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READINESS_CORS_ORIGINS", "https://a.example.com,https://b.example.com:8443")
    assert Settings().cors_origins() == ["https://a.example.com", "https://b.example.com:8443"]
    monkeypatch.delenv("READINESS_CORS_ORIGINS")
    assert Settings().cors_origins() == []


@pytest.mark.parametrize(
    "origins",
    ["*", "https://a.example.com,*", "dash.example.com", "https://a.example.com/app", "ftp://x"],
)
def test_anything_but_exact_origins_is_refused_at_start(origins: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(readiness_cors_origins=origins)
