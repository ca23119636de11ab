"""API keys (OWASP API2:2023, broken authentication): stored only as a SHA-256 hash behind a
unique index, so a request's key is found by an indexed lookup of its hash and no secret is
ever compared byte by byte; the secret is in the creation answer and nowhere else: not in the
database, not in SQL sent to it, not in any log line, not in any other response."""

import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, inspect, select
from sqlmodel import SQLModel

from tests.conftest import FakeClock, auth
from tests.factories import make_system, system_body


@pytest.fixture
def statements() -> Iterator[list[tuple[str, str]]]:
    """Every SQL statement any engine sends during the test, with its parameters."""
    sent: list[tuple[str, str]] = []

    def record(*args: Any) -> None:
        _connection, _cursor, statement, parameters, _context, _many = args
        sent.append((statement, repr(parameters)))

    event.listen(Engine, "before_cursor_execute", record)
    yield sent
    event.remove(Engine, "before_cursor_execute", record)


def database_text(engine: Engine) -> str:
    with engine.connect() as connection:
        return "\n".join(
            repr(row)
            for table in SQLModel.metadata.sorted_tables
            for row in connection.execute(select(table))
        )


def test_a_key_lives_only_in_its_creation_answer(
    client: TestClient,
    admin: dict[str, str],
    engine: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    statements: list[tuple[str, str]],
) -> None:
    # Everything at DEBUG, SQLAlchemy's statement log with its parameters included.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="app")
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    responses = []

    created = client.post(
        "/v1/api-keys",
        json={"name": "deploy-pipeline", "role": "pipeline"},
        headers={**admin, "Idempotency-Key": "create-1"},
    )
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    key_id = created.json()["id"]
    # The same Idempotency-Key makes a new key: the answer holding a secret is never stored.
    again = client.post(
        "/v1/api-keys",
        json={"name": "deploy-pipeline", "role": "pipeline"},
        headers={**admin, "Idempotency-Key": "create-1"},
    )
    assert again.status_code == 201
    assert again.json()["key"] != secret
    assert "idempotent-replayed" not in again.headers

    key = auth(secret)
    make_system(client, key, key="drafty", tier="minimal")
    idempotent = {**key, "Idempotency-Key": "evidence-1"}
    for _ in range(2):
        responses.append(
            client.post(
                "/v1/systems/drafty/gate-checks", json={"target_stage": "pilot"}, headers=idempotent
            )
        )
    responses += [
        client.put("/v1/systems/drafty/evidence/training", json={"status": "met"}, headers=key),
        client.get("/v1/systems/drafty/readiness", headers=key),
        client.post("/v1/systems", json={}, headers=key),
        client.post("/v1/api-keys", json={"name": "x", "role": "admin"}, headers=key),
    ]
    clock.advance(minutes=5)  # last_used_at is due a refresh
    responses += [
        client.get("/v1/systems", headers=key),
        client.get("/v1/api-keys", headers=admin),
        client.get("/v1/events", headers=admin),
        client.delete(f"/v1/api-keys/{key_id}", headers=admin),
        client.get("/v1/systems", headers=key),
        client.post("/v1/systems", json=system_body(key="late"), headers=idempotent),
    ]
    expected = [200, 200, 200, 200, 422, 403, 200, 200, 200, 204, 401, 401]
    assert [response.status_code for response in responses] == expected

    # The part after the prefix every listing shows, to recognise a key by.
    listed = {item["id"]: item for item in responses[7].json()["items"]}[key_id]
    assert "key" not in listed
    assert "key_hash" not in listed
    assert secret.startswith(listed["key_prefix"])
    hidden = secret[len(listed["key_prefix"]) :]
    assert len(hidden) >= 32

    for response in responses:
        assert hidden not in response.text
    assert hidden not in caplog.text
    assert any(record.name.startswith("sqlalchemy") for record in caplog.records)
    assert not [sql for sql in statements if hidden in sql[0] or hidden in sql[1]]
    assert hidden not in database_text(engine)

    hashed = hashlib.sha256(secret.encode()).hexdigest()
    with engine.connect() as connection:
        stored = connection.execute(
            select(SQLModel.metadata.tables["api_keys"]).where(
                SQLModel.metadata.tables["api_keys"].c.id == key_id
            )
        ).one()
    assert stored.key_hash == hashed
    assert stored.revoked_at is not None
    assert stored.last_used_at is not None
    # Requests looked their key up by its hash.
    assert any("key_hash" in sql and hashed in parameters for sql, parameters in statements)


def test_keys_are_found_through_a_unique_index_on_the_hash(engine: Engine) -> None:
    inspector = inspect(engine)
    unique = [
        index["column_names"] for index in inspector.get_indexes("api_keys") if index.get("unique")
    ] + [constraint["column_names"] for constraint in inspector.get_unique_constraints("api_keys")]
    assert ["key_hash"] in unique
    columns = {column["name"]: column for column in inspector.get_columns("api_keys")}
    assert "key" not in columns
    assert "secret" not in columns


def test_near_misses_of_a_key_are_all_401(client: TestClient, admin: dict[str, str]) -> None:
    created = client.post("/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=admin)
    secret = created.json()["key"]
    assert client.get("/v1/controls", headers=auth(secret)).status_code == 200
    last = "A" if secret[-1] != "A" else "B"
    for near in (
        secret[:-1],
        secret[:-1] + last,
        secret + "A",
        secret.upper(),
        created.json()["key_prefix"],
        hashlib.sha256(secret.encode()).hexdigest(),  # the stored hash is no key either
    ):
        response = client.get("/v1/controls", headers=auth(near))
        assert response.status_code == 401, near
        assert response.headers["www-authenticate"] == "Bearer"
