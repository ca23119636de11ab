"""POST /v1/integrations/mlflow/webhook against the real app and database: the signature, the
timestamp, replays, and what an alias does to the systems linked to its model."""

import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.integrations.mlflow import signature
from tests.conftest import FakeClock
from tests.factories import (
    make_system,
    meet_every_control,
    problem,
    record_evidence,
    system_body,
)
from tests.integrations.mlflow.conftest import (
    MODEL,
    REF,
    SECRET,
    WEBHOOK,
    Send,
    alias_data,
    delivery,
    mlflow_signature,
)

Headers = dict[str, str]


def events(client: TestClient, headers: Headers, kind: str) -> list[dict[str, Any]]:
    response = client.get("/v1/events", params={"type": kind, "limit": 200}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def transitions(client: TestClient, headers: Headers, key: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/systems/{key}/transitions", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def stage(client: TestClient, headers: Headers, key: str) -> str:
    response = client.get(f"/v1/systems/{key}", headers=headers)
    assert response.status_code == 200, response.text
    value: str = response.json()["stage"]
    return value


def ready_system(client: TestClient, admin: Headers, key: str = "drafty", **fields: Any) -> None:
    """A minimal-tier system linked to MODEL whose production gate passes."""
    make_system(client, admin, key=key, tier="minimal", external_ref=REF, **fields)
    meet_every_control(client, admin, key=key)


def nothing_recorded(client: TestClient, admin: Headers) -> None:
    for kind in ("gate.checked", "transition.recorded", "integration.mlflow.alias_denied"):
        assert events(client, admin, kind) == [], kind


# -- the signature -------------------------------------------------------------------------


def test_a_signed_champion_moves_a_ready_system_to_production(
    client: TestClient, admin: Headers, send: Send
) -> None:
    ready_system(client, admin)
    response = send(data=alias_data("champion", "3"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["outcome"], answer["target_stage"], answer["mlflow"]) == (
        "allowed",
        "production",
        None,
    )
    assert (answer["model"], answer["version"], answer["alias"]) == (MODEL, "3", "champion")
    (decision,) = answer["systems"]
    assert decision["system_key"] == "drafty"
    assert (decision["from_stage"], decision["allowed"], decision["blocking"]) == (
        "proposed",
        True,
        [],
    )

    (moved,) = transitions(client, admin, "drafty")
    assert moved["id"] == decision["transition_id"]
    assert (moved["from_stage"], moved["to_stage"], moved["gate"]) == (
        "proposed",
        "production",
        "production",
    )
    assert moved["release"] == {"version": "3", "uri": f"models:/{MODEL}/3"}
    assert moved["actor"] == {
        "kind": "service",
        "id": None,
        "name": "mlflow",
        "issuer": None,
        "subject": None,
    }
    assert "champion" in moved["reason"]
    assert stage(client, admin, "drafty") == "production"
    # The gate check is recorded first, as `readiness gate --record` does.
    (checked,) = events(client, admin, "gate.checked")
    assert checked["data"]["allowed"] is True
    assert checked["data"]["release"] == {"version": "3", "uri": f"models:/{MODEL}/3"}
    assert checked["data"]["gate_check_id"] == decision["gate_check_id"]


def test_a_forged_signature_is_refused(
    client: TestClient, admin: Headers, clock: FakeClock, send: Send
) -> None:
    ready_system(client, admin)
    forged = delivery(now=clock.now, data=alias_data(), secret="not-the-secret")
    body = problem(send(forged), 401, "invalid-signature")
    assert "does not match" in body["detail"]
    assert send(forged).headers["www-authenticate"].startswith("MLflow-Signature")

    # The body changed after signing: the signature no longer covers it.
    signed = delivery(now=clock.now, data=alias_data(version="3"))
    signed.body = signed.body.replace('"3"', '"4"')
    problem(send(signed), 401, "invalid-signature")
    nothing_recorded(client, admin)
    assert stage(client, admin, "drafty") == "proposed"


@pytest.mark.parametrize(
    "missing", ["X-MLflow-Signature", "X-MLflow-Delivery-Id", "X-MLflow-Timestamp"]
)
def test_a_delivery_without_each_header_is_refused(
    client: TestClient, admin: Headers, clock: FakeClock, send: Send, missing: str
) -> None:
    made = delivery(now=clock.now, data=alias_data())
    del made.headers[missing]
    problem(send(made), 401, "invalid-signature")
    nothing_recorded(client, admin)


def test_a_signature_among_several_is_enough(
    client: TestClient, admin: Headers, clock: FakeClock, send: Send
) -> None:
    ready_system(client, admin)
    made = delivery(now=clock.now, data=alias_data())
    made.headers["X-MLflow-Signature"] = "v1,AAAA " + made.headers["X-MLflow-Signature"]
    assert send(made).json()["outcome"] == "allowed"


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(minutes=-5, seconds=-1), False),  # signed over 5 minutes ago
        (timedelta(minutes=-4, seconds=-59), True),
        (timedelta(minutes=4, seconds=59), True),  # the sender's clock runs a little fast
        (timedelta(minutes=5, seconds=1), False),
    ],
)
def test_a_delivery_signed_more_than_5_minutes_away_is_refused(
    client: TestClient,
    admin: Headers,
    clock: FakeClock,
    send: Send,
    offset: timedelta,
    accepted: bool,
) -> None:
    ready_system(client, admin)
    made = delivery(now=clock.now + offset, data=alias_data())
    response = send(made)
    if accepted:
        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "allowed"
    else:
        assert "minutes" in problem(response, 401, "invalid-signature")["detail"]
        nothing_recorded(client, admin)


@pytest.mark.parametrize("app_settings", [{}])
def test_without_a_secret_every_delivery_is_refused(
    client: TestClient, admin: Headers, send: Send
) -> None:
    ready_system(client, admin)
    body = problem(send(), 401, "invalid-signature")
    assert "READINESS_MLFLOW_WEBHOOK_SECRET" in body["detail"]
    nothing_recorded(client, admin)


def test_a_signed_body_that_is_not_a_delivery_is_422_and_bad_json_400(
    client: TestClient, admin: Headers, clock: FakeClock, send: Send
) -> None:
    ready_system(client, admin)
    no_version = send(data={"name": MODEL, "alias": "champion"})
    errors = problem(no_version, 422, "validation-error")["errors"]
    assert [(error["field"], error["location"]) for error in errors] == [("data.version", "body")]

    made = delivery(now=clock.now, data=alias_data())
    made.body = "{not json"
    made.headers["X-MLflow-Signature"] = delivery(now=clock.now, data={}).headers[
        "X-MLflow-Signature"
    ]
    problem(send(made), 401, "invalid-signature")  # the signature is checked first
    made.headers["X-MLflow-Signature"] = mlflow_signature(
        SECRET, made.delivery_id, made.headers["X-MLflow-Timestamp"], made.body
    )
    problem(send(made), 400, "malformed-json")
    nothing_recorded(client, admin)


# -- replays --------------------------------------------------------------------------------


def test_a_delivery_id_seen_before_is_answered_and_nothing_is_done_again(
    client: TestClient, admin: Headers, clock: FakeClock, send: Send
) -> None:
    ready_system(client, admin)
    made = delivery(now=clock.now, data=alias_data())
    assert send(made).json()["outcome"] == "allowed"
    clock.advance(minutes=2)  # still within the 5 minutes of its signature
    again = send(made)
    assert again.status_code == 200, again.text
    assert (again.json()["outcome"], again.json()["systems"]) == ("replayed", [])
    assert len(transitions(client, admin, "drafty")) == 1
    assert len(events(client, admin, "gate.checked")) == 1

    # Another delivery id with the same body is a new delivery: that version is production's
    # already, so it answers with the transition that recorded it and records nothing.
    fresh = send(data=alias_data())
    assert fresh.json()["outcome"] == "allowed"
    (recorded,) = transitions(client, admin, "drafty")
    assert fresh.json()["systems"][0]["transition_id"] == recorded["id"]


def test_a_replay_of_an_ignored_delivery_is_a_replay(
    client: TestClient, send: Send, clock: FakeClock
) -> None:
    made = delivery(now=clock.now, data=alias_data())
    assert send(made).json()["outcome"] == "ignored"
    assert send(made).json()["outcome"] == "replayed"


@pytest.mark.slow
def test_concurrent_copies_of_one_delivery_act_once(
    live_server: str, client: TestClient, admin: Headers, clock: FakeClock
) -> None:
    """Copies that arrive together, each on its own connection and transaction: one acts,
    the others wait for its commit and are answered as replays (on PostgreSQL, through the
    delivery id's primary key; on SQLite, through the write lock)."""
    ready_system(client, admin)
    made = delivery(now=clock.now, data=alias_data())
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def post() -> None:
        start.wait()
        response = httpx.post(f"{live_server}{WEBHOOK}", content=made.body, headers=made.headers)
        assert response.status_code == 200, response.text
        outcomes.append(response.json()["outcome"])

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["allowed", "replayed", "replayed", "replayed"]
    assert len(transitions(client, admin, "drafty")) == 1
    assert len(events(client, admin, "gate.checked")) == 1


def test_delivery_ids_are_kept_a_day(
    client: TestClient, admin: Headers, clock: FakeClock, send: Send, engine: Engine
) -> None:
    def kept() -> int:
        with engine.connect() as connection:
            count: int = connection.execute(
                text("SELECT count(*) FROM mlflow_deliveries")
            ).scalar_one()
            return count

    send()
    clock.advance(hours=23)
    send()
    assert kept() == 2
    clock.advance(hours=2)
    send()  # the first is now older than a day: it could never pass the timestamp check
    assert kept() == 2


# -- what is ignored -------------------------------------------------------------------------


def test_a_model_no_system_is_linked_to_is_ignored(
    client: TestClient, admin: Headers, send: Send
) -> None:
    ready_system(client, admin)
    response = send(data=alias_data(name="another-model"))
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "ignored"
    assert "mlflow:models/another-model" in response.json()["detail"]
    nothing_recorded(client, admin)


def test_an_alias_mapped_to_no_stage_is_ignored(
    client: TestClient, admin: Headers, send: Send
) -> None:
    ready_system(client, admin)
    response = send(data=alias_data(alias="staging"))
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    nothing_recorded(client, admin)


@pytest.mark.parametrize(
    ("entity", "action", "data"),
    [
        ("model_version_alias", "deleted", {"name": MODEL, "alias": "champion"}),
        ("model_version", "created", {"name": MODEL, "version": "3", "source": "models:/m-1"}),
        ("model_version_tag", "set", {"name": MODEL, "version": "3", "key": "k", "value": "v"}),
        ("prompt_alias", "created", alias_data()),
    ],
)
def test_other_events_are_ignored(
    client: TestClient, admin: Headers, send: Send, entity: str, action: str, data: Any
) -> None:
    ready_system(client, admin)
    response = send(entity=entity, action=action, data=data)
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    nothing_recorded(client, admin)


@pytest.mark.parametrize(
    "app_settings",
    [
        {
            "readiness_mlflow_webhook_secret": SECRET,
            "readiness_mlflow_alias_stages": "live=production",
        }
    ],
)
def test_the_alias_stages_setting_decides_which_aliases_count(
    client: TestClient, admin: Headers, send: Send
) -> None:
    ready_system(client, admin)
    assert send(data=alias_data(alias="champion")).json()["outcome"] == "ignored"
    assert send(data=alias_data(alias="live")).json()["outcome"] == "allowed"


# -- denials ---------------------------------------------------------------------------------


def test_a_champion_on_a_system_that_is_not_ready_is_denied(
    client: TestClient, admin: Headers, send: Send
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    response = send(data=alias_data("champion", "7"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["outcome"], answer["mlflow"]) == ("denied", None)
    (decision,) = answer["systems"]
    assert (decision["allowed"], decision["transition_id"]) == (False, None)
    blocking = {(item["code"], item["control"]) for item in decision["blocking"]}
    assert ("control_missing", "data_rules") in blocking

    assert stage(client, admin, "drafty") == "proposed"
    assert transitions(client, admin, "drafty") == []
    (checked,) = events(client, admin, "gate.checked")
    assert checked["data"]["allowed"] is False
    (denied,) = events(client, admin, "integration.mlflow.alias_denied")
    assert denied["system_key"] == "drafty"
    assert denied["actor"]["name"] == "mlflow"
    data = denied["data"]
    assert (data["model"], data["version"], data["alias"]) == (MODEL, "7", "champion")
    assert (data["target_stage"], data["current_stage"], data["refused_by"]) == (
        "production",
        "proposed",
        "gate",
    )
    assert data["release"] == {"version": "7", "uri": f"models:/{MODEL}/7"}
    assert data["gate_check_id"] == decision["gate_check_id"]
    assert data["blocking"] == decision["blocking"]
    assert data["delivery_id"] == answer["delivery_id"]


def test_production_needs_approvals_that_mlflow_cannot_give(
    client: TestClient, admin: Headers, send: Send
) -> None:
    """A high-tier system with every control met still lacks its pilot and an approval: the
    service identity MLflow acts as has the pipeline role, so it never approves itself."""
    make_system(client, admin, key="claims", tier="high", external_ref=REF)
    meet_every_control(client, admin, key="claims")
    answer = send(data=alias_data("champion")).json()
    assert answer["outcome"] == "denied"
    codes = {item["code"] for item in answer["systems"][0]["blocking"]}
    assert "approvals_missing" in codes


def test_a_challenger_runs_the_pilot_gate(client: TestClient, admin: Headers, send: Send) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    answer = send(data=alias_data("challenger", "2")).json()
    assert (answer["outcome"], answer["target_stage"]) == ("allowed", "pilot")
    (moved,) = transitions(client, admin, "drafty")
    assert (moved["to_stage"], moved["release"]["uri"]) == ("pilot", f"models:/{MODEL}/2")


def test_a_new_champion_of_a_system_in_production_passes_its_gate_again(
    client: TestClient, admin: Headers, send: Send
) -> None:
    ready_system(client, admin)
    assert send(data=alias_data("champion", "3")).json()["outcome"] == "allowed"
    # Still ready: version 4 may be champion, recorded as a release moving into production.
    answer = send(data=alias_data("champion", "4")).json()
    assert answer["outcome"] == "allowed"
    newest, first = transitions(client, admin, "drafty")
    assert answer["systems"][0]["transition_id"] == newest["id"]
    assert (newest["from_stage"], newest["to_stage"]) == ("production", "production")
    assert newest["release"] == {"version": "4", "uri": "models:/claims-triage-model/4"}
    assert first["release"]["version"] == "3"

    # Its evidence no longer holds: the next version may not be champion.
    record_evidence(client, admin, key="drafty", control="data_rules", status="not_met")
    answer = send(data=alias_data("champion", "5")).json()
    assert answer["outcome"] == "denied"
    assert stage(client, admin, "drafty") == "production"
    (denied,) = events(client, admin, "integration.mlflow.alias_denied")
    assert denied["data"]["current_stage"] == "production"


def test_a_challenger_leaves_a_system_in_production_where_it_is(
    client: TestClient, admin: Headers, send: Send
) -> None:
    ready_system(client, admin)
    send(data=alias_data("champion", "3"))
    answer = send(data=alias_data("challenger", "4")).json()
    assert answer["outcome"] == "allowed"
    assert stage(client, admin, "drafty") == "production"
    assert len(transitions(client, admin, "drafty")) == 1


def test_a_retired_system_takes_no_version(client: TestClient, admin: Headers, send: Send) -> None:
    ready_system(client, admin)
    retire = {"to_stage": "retired", "reason": "replaced"}
    assert (
        client.post("/v1/systems/drafty/transitions", json=retire, headers=admin).status_code == 201
    )
    answer = send(data=alias_data("champion")).json()
    assert answer["outcome"] == "denied"
    (denied,) = events(client, admin, "integration.mlflow.alias_denied")
    assert denied["data"]["refused_by"] == "lifecycle"


def test_one_model_links_one_system_so_no_other_team_can_deny_its_alias(
    client: TestClient, admin: Headers, send: Send
) -> None:
    ready_system(client, admin, key="drafty")
    other_team = system_body(
        key="drafty-eu",
        tier="minimal",
        external_ref=REF,
        owner={"team": "eu-platform", "contact": "eu@example.com"},
    )
    taken = client.post("/v1/systems", json=other_team, headers=admin)
    assert taken.status_code == 409, taken.text
    assert taken.json()["type"].endswith("/external-ref-taken")

    answer = send(data=alias_data("champion")).json()
    assert answer["outcome"] == "allowed"
    assert [(one["system_key"], one["allowed"]) for one in answer["systems"]] == [("drafty", True)]
    assert stage(client, admin, "drafty") == "production"


@pytest.mark.parametrize(
    "timestamp",
    [
        "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660".encode(),  # Arabic-Indic
        b"\xb2\xb9",  # Latin-1 superscripts: digits to str.isdigit, not to int()
        b"999999999999",  # ASCII digits, but a year past what a date can hold
    ],
)
def test_a_timestamp_that_is_not_ascii_seconds_is_an_invalid_signature(
    client: TestClient, admin: Headers, clock: FakeClock, timestamp: bytes | str
) -> None:
    # Signed over the timestamp exactly as the service reads the header (Latin-1, as HTTP
    # has it), so only the timestamp's meaning is in question, never the signature.
    seen = timestamp.decode("latin-1")
    made = delivery(now=clock.now, data=alias_data())
    made.headers["X-MLflow-Signature"] = mlflow_signature(SECRET, made.delivery_id, seen, made.body)
    headers = [
        (name.encode(), value.encode())
        for name, value in made.headers.items()
        if name != "X-MLflow-Timestamp"
    ]
    headers.append((b"X-MLflow-Timestamp", timestamp))
    problem(client.post(WEBHOOK, content=made.body, headers=headers), 401, "invalid-signature")
    nothing_recorded(client, admin)


def test_a_timestamp_in_other_scripts_digits_is_refused_even_when_it_names_now(
    clock: FakeClock,
) -> None:
    # int() reads Arabic-Indic digits as a number; MLflow only ever sends ASCII ones, and a
    # header the service reads another way than the sender wrote it is not one to trust.
    now = str(int(clock.now.timestamp()))
    arabic = now.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    body = b"{}"
    with pytest.raises(signature.InvalidSignature, match="Unix time"):
        signature.verify(
            secret=SECRET,
            delivery_id="d-1",
            timestamp=arabic,
            signature=signature.sign(SECRET, "d-1", arabic, body),
            body=body,
            now=clock.now,
        )
