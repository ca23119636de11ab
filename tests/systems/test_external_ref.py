"""One thing outside links to one system: a second system with the same `external_ref` is
refused with 409 `external-ref-taken`, on create and on PATCH, also when two requests race
for it; systems linked to nothing are many."""

import threading
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.auth.roles import Principal, Role
from app.db import write_transaction
from app.errors import ExternalRefTaken
from app.systems import service as system_service
from app.systems.schemas import SystemCreate
from tests.conftest import ADMIN_SECRET, START, auth
from tests.factories import make_system, system_body

Headers = dict[str, str]
REF = "mlflow:models/claims-triage-model"
RACERS = 8


def test_a_second_system_with_the_same_external_ref_is_409(
    client: TestClient, pipeline: Headers
) -> None:
    make_system(client, pipeline, key="first", external_ref=REF)
    again = client.post(
        "/v1/systems", json=system_body(key="second", external_ref=REF), headers=pipeline
    )
    assert again.status_code == 409, again.text
    problem = again.json()
    assert problem["type"].endswith("/external-ref-taken")
    assert problem["external_ref"] == REF
    assert client.get("/v1/systems/second", headers=pipeline).status_code == 404


def test_systems_linked_to_nothing_are_many(client: TestClient, pipeline: Headers) -> None:
    make_system(client, pipeline, key="first")
    make_system(client, pipeline, key="second", external_ref=None)
    make_system(client, pipeline, key="third", external_ref="mlflow:models/another-model")


def test_a_patch_to_another_systems_external_ref_is_409(
    client: TestClient, pipeline: Headers
) -> None:
    make_system(client, pipeline, key="first", external_ref=REF)
    make_system(client, pipeline, key="second")
    taken = client.patch("/v1/systems/second", json={"external_ref": REF}, headers=pipeline)
    assert taken.status_code == 409, taken.text
    assert taken.json()["type"].endswith("/external-ref-taken")
    second = client.get("/v1/systems/second", headers=pipeline).json()
    assert (second["external_ref"], second["version"]) == (None, 1)

    # Its own value again changes nothing; once the first lets go, the second may take it.
    same = client.patch("/v1/systems/first", json={"external_ref": REF}, headers=pipeline)
    assert same.status_code == 200, same.text
    released = client.patch("/v1/systems/first", json={"external_ref": None}, headers=pipeline)
    assert released.status_code == 200, released.text
    moved = client.patch("/v1/systems/second", json={"external_ref": REF}, headers=pipeline)
    assert moved.status_code == 200, moved.text
    assert moved.json()["external_ref"] == REF


def _race(
    base_url: str, request: "list[tuple[str, str, dict[str, object]]]"
) -> list[httpx.Response]:
    barrier = threading.Barrier(len(request))
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send(method: str, path: str, body: dict[str, object]) -> None:
        with httpx.Client(base_url=base_url, headers=auth(ADMIN_SECRET), timeout=60) as http:
            barrier.wait()
            response = http.request(method, path, json=body)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send, args=one) for one in request]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


def test_concurrent_creates_with_one_external_ref_one_wins(live_server: str) -> None:
    answers = _race(
        live_server,
        [
            ("POST", "/v1/systems", system_body(key=f"racer-{n}", external_ref=REF))
            for n in range(RACERS)
        ],
    )
    assert sorted(answer.status_code for answer in answers) == [201] + [409] * (RACERS - 1)
    assert all(
        answer.json()["type"].endswith("/external-ref-taken")
        for answer in answers
        if answer.status_code == 409
    )


def test_concurrent_patches_to_one_external_ref_one_wins(live_server: str) -> None:
    with httpx.Client(base_url=live_server, headers=auth(ADMIN_SECRET), timeout=60) as http:
        for n in range(RACERS):
            assert http.post("/v1/systems", json=system_body(key=f"racer-{n}")).status_code == 201
    answers = _race(
        live_server,
        [("PATCH", f"/v1/systems/racer-{n}", {"external_ref": REF}) for n in range(RACERS)],
    )
    assert sorted(answer.status_code for answer in answers) == [200] + [409] * (RACERS - 1)
    assert all(
        answer.json()["type"].endswith("/external-ref-taken")
        for answer in answers
        if answer.status_code == 409
    )


def test_the_loser_of_a_race_past_the_look_gets_the_409(app: FastAPI, database_url: str) -> None:
    """The second create looks while the first's insert is not committed yet, finds nothing,
    and its own insert waits for the first's commit: the unique index's refusal then is the
    409, not a 500. Only PostgreSQL lets a second writer in while the first is open."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer: the second look already sees the first insert")
    database = app.state.database
    actor = Principal(key_id=None, name="racer", role=Role.admin)
    inserted, release = threading.Event(), threading.Event()
    refused: list[BaseException] = []

    def create(key: str) -> SystemCreate:
        return SystemCreate.model_validate(system_body(key=key, external_ref=REF))

    def first() -> None:
        with write_transaction(database) as session:
            system_service.create_system(session, body=create("first"), actor=actor, now=START)
            inserted.set()
            release.wait(10)

    def second() -> None:
        inserted.wait(10)
        try:
            with write_transaction(database) as session:
                system_service.create_system(session, body=create("second"), actor=actor, now=START)
        except ExternalRefTaken as exc:
            refused.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the second's insert is waiting for the first's transaction
    release.set()
    for thread in threads:
        thread.join(30)
    assert len(refused) == 1
