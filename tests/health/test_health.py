from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_readyz_is_503_on_an_unmigrated_database(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}"))
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    app.state.database.dispose()


def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    app = create_app(
        Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    )
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    app.state.database.dispose()
