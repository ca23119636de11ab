import json
import threading
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlmodel import col

from app.idempotency import service as idempotency_service
from app.models import IdempotentRequest
from tests.conftest import ADMIN_SECRET, auth
from tests.factories import system_body

Headers = dict[str, str]


def events_of(client: TestClient, headers: Headers, key: str) -> list[str]:
    items = client.get("/v1/events", params={"system": key}, headers=headers).json()["items"]
    return [event["type"] for event in items]


def test_same_key_and_body_replays_without_doing_the_work_again(
    client: TestClient, pipeline: Headers
) -> None:
    headers = {**pipeline, "Idempotency-Key": "run-4711"}
    first = client.post("/v1/systems", json=system_body(key="retry-me"), headers=headers)
    again = client.post("/v1/systems", json=system_body(key="retry-me"), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    # One system, one event: the retry did not run the work (it would have been a 409).
    assert events_of(client, pipeline, "retry-me") == ["system.created"]


def test_keys_are_kept_at_least_a_day(client: TestClient, pipeline: Headers, clock) -> None:  # type: ignore[no-untyped-def]
    headers = {**pipeline, "Idempotency-Key": "nightly-2026-03-02"}
    first = client.post("/v1/systems", json=system_body(key="kept"), headers=headers)
    clock.advance(hours=25)  # a retry from tomorrow's run of the same job
    again = client.post("/v1/systems", json=system_body(key="kept"), headers=headers)
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert events_of(client, pipeline, "kept") == ["system.created"]


def test_keys_past_the_retention_period_are_forgotten(
    app: FastAPI,
    client: TestClient,
    pipeline: Headers,
    clock,  # type: ignore[no-untyped-def]
) -> None:
    headers = {**pipeline, "Idempotency-Key": "last-months-run"}
    first = client.post("/v1/systems", json=system_body(key="forgotten"), headers=headers)
    assert first.status_code == 201
    clock.advance(hours=app.state.settings.idempotency_retention_hours + 1)
    # The retry finds the key forgotten, so it runs as a new request: the system exists.
    again = client.post("/v1/systems", json=system_body(key="forgotten"), headers=headers)
    assert again.status_code == 409
    assert "idempotent-replayed" not in again.headers
    # And the key is remembered afresh, for this answer.
    third = client.post("/v1/systems", json=system_body(key="forgotten"), headers=headers)
    assert (third.status_code, third.headers["idempotent-replayed"]) == (409, "true")


def test_a_backlog_of_expired_keys_is_deleted_a_chunk_per_request(
    app: FastAPI,
    client: TestClient,
    pipeline: Headers,
    clock,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(idempotency_service, "PURGE_CHUNK", 2)

    def post(key: str) -> None:
        headers = {**pipeline, "Idempotency-Key": key}
        assert client.post("/v1/systems", json=system_body(key=key), headers=headers).is_success

    def stored() -> int:
        with app.state.database.read_engine.connect() as connection:
            return int(connection.execute(select(func.count(IdempotentRequest.id))).scalar_one())

    for number in range(5):
        post(f"old-{number}")
    clock.advance(hours=app.state.settings.idempotency_retention_hours + 1)
    remaining = []
    for number in range(3):
        post(f"new-{number}")
        remaining.append(stored())
    # Each request deletes a chunk of two old records and adds its own; the third finds the
    # last old one, so purging then waits its minute.
    assert remaining == [5 - 2 + 1, 5 - 4 + 2, 5 - 5 + 3]


def test_same_key_with_another_body_is_422(client: TestClient, pipeline: Headers) -> None:
    headers = {**pipeline, "Idempotency-Key": "run-1"}
    client.post("/v1/systems", json=system_body(key="first-one"), headers=headers)
    other = client.post("/v1/systems", json=system_body(key="other-one"), headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert client.get("/v1/systems/other-one", headers=pipeline).status_code == 404


def test_keys_are_scoped_to_the_api_key(client: TestClient, keys: dict[str, Headers]) -> None:
    body = {"target_stage": "pilot"}
    client.post("/v1/systems", json=system_body(key="scoped"), headers=keys["pipeline"])
    for role in ("pipeline", "admin"):
        response = client.post(
            "/v1/systems/scoped/gate-checks",
            json=body,
            headers={**keys[role], "Idempotency-Key": "same"},
        )
        assert response.status_code == 200
        assert "idempotent-replayed" not in response.headers
    assert events_of(client, keys["pipeline"], "scoped").count("gate.checked") == 2


def test_error_answers_replay_but_server_errors_do_not(
    app: FastAPI, client: TestClient, pipeline: Headers
) -> None:
    headers = {**pipeline, "Idempotency-Key": "bad-body"}
    first = client.post("/v1/systems", json={"key": "x"}, headers=headers)
    again = client.post("/v1/systems", json={"key": "x"}, headers=headers)
    assert first.status_code == again.status_code == 422
    assert again.headers["idempotent-replayed"] == "true"

    calls = []

    def flaky() -> dict[str, str]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")
        return {"ok": "yes"}

    app.add_api_route("/flaky", flaky, methods=["POST"])
    retry = {**pipeline, "Idempotency-Key": "flaky-1"}
    assert client.post("/flaky", headers=retry).status_code == 500
    assert client.post("/flaky", headers=retry).status_code == 200
    assert client.post("/flaky", headers=retry).headers["idempotent-replayed"] == "true"
    assert len(calls) == 2


def test_bad_keys_are_400(client: TestClient, pipeline: Headers) -> None:
    response = client.post(
        "/v1/systems", json=system_body(), headers={**pipeline, "Idempotency-Key": "x" * 201}
    )
    assert response.status_code == 400
    assert response.json()["type"].endswith("/invalid-idempotency-key")


def test_concurrent_requests_with_one_key_do_the_work_once(live_server: str) -> None:
    headers = {**auth(ADMIN_SECRET), "Idempotency-Key": "together"}
    racers = 8
    barrier = threading.Barrier(racers)
    statuses: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        with httpx.Client(base_url=live_server, timeout=60) as http:
            barrier.wait()
            response = http.post("/v1/systems", json=system_body(key="once"), headers=headers)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=create) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Each racer either ran the work, replayed it, or was told it is still running.
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    with httpx.Client(base_url=live_server, headers=auth(ADMIN_SECRET), timeout=60) as http:
        events = http.get("/v1/events", params={"system": "once"}).json()["items"]
    assert [event["type"] for event in events] == ["system.created"]


def test_no_replay_for_a_revoked_key_nor_for_key_creation(
    client: TestClient, admin: Headers
) -> None:
    created = client.post("/v1/api-keys", json={"name": "p", "role": "pipeline"}, headers=admin)
    pipeline = auth(created.json()["key"])
    headers = {**pipeline, "Idempotency-Key": "k-1"}
    assert (
        client.post("/v1/systems", json=system_body(key="sys-r"), headers=headers).status_code
        == 201
    )
    client.delete(f"/v1/api-keys/{created.json()['id']}", headers=admin)
    replay = client.post("/v1/systems", json=system_body(key="sys-r"), headers=headers)
    assert replay.status_code == 401

    # A new key's secret is never stored for replay: a retry makes (and shows) a new key.
    once = {**admin, "Idempotency-Key": "make-key"}
    first = client.post("/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=once)
    second = client.post("/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=once)
    assert first.json()["key"] != second.json()["key"]
    assert "idempotent-replayed" not in second.headers


def test_the_answer_is_stored_for_replays_before_it_is_sent(
    app: FastAPI, client: TestClient, pipeline: Headers
) -> None:
    # A client that gets its answer and sends the request again at once must get the
    # replay, not a 409 "still in progress": so when the answer starts on the wire, the
    # record already holds it. Driven at the ASGI level to look at the database the
    # moment the response starts.
    body = json.dumps(system_body(key="stored-first")).encode()
    headers = {**pipeline, "Idempotency-Key": "stored-first", "Content-Type": "application/json"}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/systems",
        "raw_path": b"/v1/systems",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    stored_when_sent: list[int | None] = []
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
            with app.state.database.read_engine.connect() as connection:
                stored_when_sent.append(
                    connection.execute(
                        select(IdempotentRequest.status).where(
                            col(IdempotentRequest.key) == "stored-first"
                        )
                    ).scalar_one()
                )

    anyio.run(app, scope, receive, send)

    assert statuses == [201]
    assert stored_when_sent == [201]
