"""A bootstrap admin key short enough to guess stops the process before it serves, and API
key answers show no more of any secret than is needed to recognise it."""

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, insert, select
from sqlmodel import SQLModel

from app.auth.service import hash_key
from app.config import Settings, get_settings
from app.main import PROJECT_ROOT, create_app
from tests.conftest import ADMIN_SECRET
from tests.serving import free_port, make_run_command

SHORT = "rdy_only_31_characters_long_xxx"
LONG_ENOUGH = "rdy_exactly_32_characters_long_x"


def test_settings_refuse_a_bootstrap_key_under_32_characters() -> None:
    assert (len(SHORT), len(LONG_ENOUGH)) == (31, 32)
    with pytest.raises(ValidationError) as refused:
        Settings(readiness_bootstrap_admin_key=SHORT)  # type: ignore[arg-type]
    message = str(refused.value)
    assert "readiness_bootstrap_admin_key" in message
    assert "at least 32 characters" in message
    assert SHORT not in message
    accepted = Settings(readiness_bootstrap_admin_key=LONG_ENOUGH)  # type: ignore[arg-type]
    assert accepted.readiness_bootstrap_admin_key is not None


@pytest.fixture
def short_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("READINESS_BOOTSTRAP_ADMIN_KEY", SHORT)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("short_key_in_environment")
def test_create_app_from_the_environment_stops_with_the_reason() -> None:
    with pytest.raises(SystemExit) as stopped:
        create_app()
    reason = str(stopped.value.code)
    assert reason.startswith("invalid settings: READINESS_BOOTSTRAP_ADMIN_KEY: ")
    assert "at least 32 characters" in reason
    assert SHORT not in reason


@pytest.mark.slow
def test_the_server_does_not_start_with_a_short_bootstrap_key(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}",
        "READINESS_BOOTSTRAP_ADMIN_KEY": SHORT,
    }
    finished = subprocess.run(
        make_run_command(free_port()),
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode != 0
    assert "READINESS_BOOTSTRAP_ADMIN_KEY: " in finished.stderr
    assert "at least 32 characters" in finished.stderr
    assert SHORT not in finished.stdout + finished.stderr
    assert "Traceback" not in finished.stderr
    assert not (tmp_path / "never.db").exists()


def test_answers_show_at_most_8_characters_of_a_key(
    client: TestClient, admin: dict[str, str], engine: Engine
) -> None:
    created = client.post("/v1/api-keys", json={"name": "ci", "role": "pipeline"}, headers=admin)
    assert created.status_code == 201
    secret = created.json()["key"]
    assert created.json()["key_prefix"] == secret[:8]

    api_keys = SQLModel.metadata.tables["api_keys"]
    # A key stored when prefixes kept 10 characters.
    with engine.begin() as connection:
        connection.execute(
            insert(api_keys).values(
                name="older",
                role="viewer",
                key_hash=hash_key("rdy_an_older_key_with_a_long_stored_prefix"),
                key_prefix="rdy_an_old",
                created_at=datetime(2026, 1, 5, tzinfo=UTC),
            )
        )
        stored = dict(connection.execute(select(api_keys.c.name, api_keys.c.key_prefix)).all())
    # New keys, the bootstrap one included, store no more than they show.
    assert stored["ci"] == secret[:8]
    assert stored["bootstrap-admin"] == ADMIN_SECRET[:8]

    listed = client.get("/v1/api-keys", headers=admin).json()["items"]
    assert {item["name"]: item["key_prefix"] for item in listed} == {
        "bootstrap-admin": ADMIN_SECRET[:8],
        "ci": secret[:8],
        "older": "rdy_an_o",
    }
