"""The event log proves itself: every event is hash-chained to the one before, the chain is
verified on request, and signed checkpoints catch rows removed or rewritten later."""

import base64
import hashlib
import json
import subprocess
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from app.audit import chain
from app.models import Event
from tests.conftest import ADMIN_SECRET, FakeClock, auth, project_path
from tests.factories import make_system, meet_every_control, transition

GENESIS = "0" * 64


def feed(client: TestClient, viewer: dict[str, str]) -> list[dict[str, Any]]:
    return client.get("/v1/events", params={"limit": 200}, headers=viewer).json()["items"]


def recomputed(event: dict[str, Any], prev_hash: str) -> str:
    """What docs/audit.md tells an auditor to compute from the feed."""
    fields = ("id", "type", "system_key", "actor", "occurred_at", "data")
    canonical = rfc8785.dumps({name: event[name] for name in fields})
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


def some_history(client: TestClient, pipeline: dict[str, str]) -> None:
    """Events of several kinds: non-ASCII text, and numbers whole and tiny in floats, which
    JSON writers of different languages write differently unless canonical."""
    make_system(client, pipeline, key="chain-a", name="Åsa's triage ✓", tier="minimal")
    make_system(client, pipeline, key="chain-b")
    meet_every_control(client, auth(ADMIN_SECRET), key="chain-a")  # approver-attested too
    assert transition(client, pipeline, key="chain-a", to="pilot").status_code == 201
    pilot = client.post(
        "/v1/systems/chain-a/pilots",
        json={
            "name": "Two-week trial",
            "planned_end": "2026-12-31T00:00:00Z",
            "criteria": [{"metric": "precision", "op": ">=", "target": 2.0}],
        },
        headers=pipeline,
    )
    assert pilot.status_code == 201, pilot.text
    result = client.post(
        f"/v1/pilots/{pilot.json()['id']}/results",
        json={"metrics": {"precision": 3.0, "drift": 1e-9, "cost": 1e21, "recall": 0.1 + 0.2}},
        headers=pipeline,
    )
    assert result.status_code == 201, result.text
    client.patch("/v1/systems/chain-b", json={"name": "Renamed"}, headers=pipeline)


def verify(client: TestClient, admin: dict[str, str], checkpoint: Any = None) -> dict[str, Any]:
    if checkpoint is None:
        response = client.get("/v1/audit/verify", headers=admin)
    else:
        response = client.post("/v1/audit/verify", json=checkpoint, headers=admin)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_each_event_links_to_the_one_before_and_an_auditor_can_recompute_it(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str]
) -> None:
    some_history(client, pipeline)
    events = feed(client, viewer)
    assert len(events) >= 9
    prev_hash = GENESIS
    for event in events:
        assert event["prev_hash"] == prev_hash
        assert event["hash"] == recomputed(event, prev_hash)
        prev_hash = event["hash"]


def test_verify_recomputes_the_whole_chain(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str], admin: dict[str, str]
) -> None:
    some_history(client, pipeline)
    assert verify(client, admin) == {
        "ok": True,
        "checked": len(feed(client, viewer)),
        "first_bad_id": None,
        "reason": None,
    }


def test_a_row_changed_with_sql_is_named(
    client: TestClient,
    engine: Engine,
    pipeline: dict[str, str],
    viewer: dict[str, str],
    admin: dict[str, str],
) -> None:
    some_history(client, pipeline)
    events = feed(client, viewer)
    target = next(event for event in events if event["type"] == "evidence.recorded")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE events SET data = :data WHERE id = :id"),
            {"data": json.dumps({**target["data"], "status": "not_met"}), "id": target["id"]},
        )
    answer = verify(client, admin)
    assert answer["ok"] is False
    assert answer["first_bad_id"] == target["id"]
    assert answer["reason"] == "altered"
    assert answer["checked"] == [event["id"] for event in events].index(target["id"]) + 1


def test_a_row_removed_from_the_middle_breaks_the_next_link(
    client: TestClient,
    engine: Engine,
    pipeline: dict[str, str],
    viewer: dict[str, str],
    admin: dict[str, str],
) -> None:
    some_history(client, pipeline)
    ids = [event["id"] for event in feed(client, viewer)]
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM events WHERE id = :id"), {"id": ids[5]})
    answer = verify(client, admin)
    assert (answer["ok"], answer["first_bad_id"], answer["reason"]) == (False, ids[6], "unlinked")


def test_a_checkpoint_verifies_offline_with_the_public_key(
    client: TestClient, clock: FakeClock, pipeline: dict[str, str], viewer: dict[str, str]
) -> None:
    some_history(client, pipeline)
    checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
    public = client.get("/v1/audit/public-key", headers=viewer).json()
    newest = feed(client, viewer)[-1]
    assert (checkpoint["event_id"], checkpoint["hash"]) == (newest["id"], newest["hash"])
    assert checkpoint["signed_at"] == clock().isoformat().replace("+00:00", "Z")
    assert public["algorithm"] == "Ed25519"
    assert checkpoint["key_id"] == public["key_id"]

    # As docs/audit.md shows it: only the public key and the saved checkpoint.
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public["public_key"]))
    message = f"{checkpoint['event_id']}:{checkpoint['hash']}:{checkpoint['signed_at']}"
    key.verify(base64.b64decode(checkpoint["signature"]), message.encode())
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(checkpoint["signature"]), message.replace(":", ";").encode())


def test_deleting_the_newest_rows_is_caught_by_an_earlier_checkpoint(
    client: TestClient,
    engine: Engine,
    pipeline: dict[str, str],
    viewer: dict[str, str],
    admin: dict[str, str],
) -> None:
    some_history(client, pipeline)
    checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
    assert verify(client, admin, checkpoint)["ok"] is True
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM events WHERE id >= :id"), {"id": checkpoint["event_id"] - 2}
        )
    # What is left still chains: only the checkpoint knows what is gone.
    assert verify(client, admin)["ok"] is True
    answer = verify(client, admin, checkpoint)
    assert answer["ok"] is False
    assert answer["first_bad_id"] == checkpoint["event_id"]
    assert answer["reason"] == "checkpoint_missing"


def test_a_chain_rewritten_with_fresh_hashes_no_longer_reaches_the_checkpoint(
    client: TestClient,
    engine: Engine,
    pipeline: dict[str, str],
    viewer: dict[str, str],
    admin: dict[str, str],
) -> None:
    some_history(client, pipeline)
    checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
    # Someone with write access rewrites an event and every hash after it.
    with engine.begin() as connection:
        events = Event.__table__  # type: ignore[attr-defined]
        rows = connection.execute(select(events).order_by(events.c.id)).mappings().all()
        prev_hash = GENESIS
        for row in rows:
            event = dict(row)
            if event["type"] == "system.created" and event["system_key"] == "chain-b":
                event["data"] = {**event["data"], "tier": "minimal"}
            event["hash"] = chain.link(prev_hash, event)
            connection.execute(
                text(
                    "UPDATE events SET data = :data, prev_hash = :prev, hash = :hash WHERE id = :id"
                ),
                {
                    "data": json.dumps(event["data"]),
                    "prev": prev_hash,
                    "hash": event["hash"],
                    "id": event["id"],
                },
            )
            prev_hash = event["hash"]
    assert verify(client, admin)["ok"] is True
    answer = verify(client, admin, checkpoint)
    assert answer["ok"] is False
    assert answer["first_bad_id"] == checkpoint["event_id"]
    assert answer["reason"] == "checkpoint_differs"


def test_a_checkpoint_not_signed_by_the_service_is_refused(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str], admin: dict[str, str]
) -> None:
    some_history(client, pipeline)
    checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
    for forged in (
        {**checkpoint, "event_id": checkpoint["event_id"] - 1},
        {**checkpoint, "signed_at": "2026-01-15T09:00:01Z"},
        {**checkpoint, "signature": base64.b64encode(bytes(64)).decode()},
        {**checkpoint, "signature": "not base64!"},
        {**checkpoint, "key_id": "0123456789abcdef"},
    ):
        response = client.post("/v1/audit/verify", json=forged, headers=admin)
        assert response.status_code == 422, forged
        assert response.json()["type"] == "/problems/invalid-checkpoint"
    response = client.post("/v1/audit/verify", json={**checkpoint, "hash": "xyz"}, headers=admin)
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation-error"


def test_an_empty_log_has_a_checkpoint_too(
    client: TestClient, engine: Engine, viewer: dict[str, str], admin: dict[str, str]
) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM events"))
    checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
    assert (checkpoint["event_id"], checkpoint["hash"]) == (0, GENESIS)
    assert verify(client, admin, checkpoint) == {
        "ok": True,
        "checked": 0,
        "first_bad_id": None,
        "reason": None,
    }


def test_who_may_ask(client: TestClient, viewer: dict[str, str], pipeline: dict[str, str]) -> None:
    assert client.get("/v1/audit/checkpoint").status_code == 401
    assert client.get("/v1/audit/public-key").status_code == 401
    assert client.get("/v1/audit/verify").status_code == 401
    for role in (viewer, pipeline):
        assert client.get("/v1/audit/verify", headers=role).status_code == 403
        checkpoint = client.get("/v1/audit/checkpoint", headers=role).json()
        assert client.post("/v1/audit/verify", json=checkpoint, headers=role).status_code == 403


def test_the_auditors_snippet_in_the_docs_checks_a_checkpoint_offline(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str]
) -> None:
    source = project_path("docs", "audit.md").read_text()
    snippet = source.split("```python\n", 1)[1].split("```", 1)[0]
    auditor: dict[str, Any] = {}
    exec(snippet, auditor)  # the docs' own code, as an auditor would run it
    some_history(client, pipeline)
    checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
    public = client.get("/v1/audit/public-key", headers=viewer).json()["public_key"]
    make_system(client, pipeline, key="chain-after")  # the log goes on past the checkpoint

    auditor["check_checkpoint"](public, checkpoint)
    auditor["check_chain"](feed(client, viewer), checkpoint)
    with pytest.raises(InvalidSignature):
        auditor["check_checkpoint"](public, {**checkpoint, "event_id": checkpoint["event_id"] - 1})
    altered = feed(client, viewer)
    altered[3]["data"] = {**altered[3]["data"], "extra": 1}
    with pytest.raises(AssertionError, match=f"altered at {altered[3]['id']}"):
        auditor["check_chain"](altered, checkpoint)


# An auditor's check in another language: JavaScript's own JSON writer, with keys sorted,
# is RFC 8785 for the values events hold.
NODE_VERIFIER = r"""
const crypto = require("crypto");
const canonical = (value) =>
  Array.isArray(value) ? "[" + value.map(canonical).join(",") + "]"
  : value !== null && typeof value === "object"
    ? "{" + Object.keys(value).sort()
        .map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}"
    : JSON.stringify(value);
let prev = "0".repeat(64);
const bad = [];
for (const event of JSON.parse(require("fs").readFileSync(0, "utf8"))) {
  const fields = {};
  for (const name of ["id", "type", "system_key", "actor", "occurred_at", "data"]) {
    fields[name] = event[name];
  }
  const hash = crypto.createHash("sha256").update(prev + canonical(fields), "utf8").digest("hex");
  if (event.prev_hash !== prev || event.hash !== hash) bad.push(event.id);
  prev = event.hash;
}
console.log(JSON.stringify(bad));
"""


def test_an_auditor_in_javascript_recomputes_the_same_hashes(
    client: TestClient, pipeline: dict[str, str], viewer: dict[str, str]
) -> None:
    some_history(client, pipeline)
    events = feed(client, viewer)
    assert any(event["type"] == "pilot.result_recorded" for event in events)
    checked = subprocess.run(
        ["node", "-e", NODE_VERIFIER],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(checked.stdout) == []
    events[-1]["data"]["name"] = "Changed"
    checked = subprocess.run(
        ["node", "-e", NODE_VERIFIER], input=json.dumps(events), capture_output=True, text=True
    )
    assert json.loads(checked.stdout) == [events[-1]["id"]]


def test_a_row_rewritten_into_what_cannot_be_read_back_is_named_too(
    client: TestClient,
    engine: Engine,
    pipeline: dict[str, str],
    viewer: dict[str, str],
    admin: dict[str, str],
) -> None:
    some_history(client, pipeline)
    target = feed(client, viewer)[4]["id"]
    # A number JSON cannot carry; on SQLite, which checks no types, text that is no JSON
    # and a time that is no time as well.
    rewrites = [("data", '{"x": 1e400}')]
    if engine.dialect.name == "sqlite":
        rewrites += [("data", "not json"), ("occurred_at", "yesterday")]
    for column, value in rewrites:
        with engine.begin() as connection:
            original = connection.execute(
                text(f"SELECT CAST({column} AS TEXT) FROM events WHERE id = :id"),
                {"id": target},
            ).scalar_one()
            connection.execute(
                text(f"UPDATE events SET {column} = :value WHERE id = :id"),
                {"value": value, "id": target},
            )
        answer = verify(client, admin)
        assert (answer["ok"], answer["first_bad_id"], answer["reason"]) == (
            False,
            target,
            "altered",
        ), (column, value)
        with engine.begin() as connection:
            connection.execute(
                text(f"UPDATE events SET {column} = :value WHERE id = :id"),
                {"value": original, "id": target},
            )
        assert verify(client, admin)["ok"] is True, (column, value)


def test_a_verification_is_never_replayed(
    client: TestClient,
    engine: Engine,
    pipeline: dict[str, str],
    viewer: dict[str, str],
    admin: dict[str, str],
) -> None:
    some_history(client, pipeline)
    checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
    headers = {**admin, "Idempotency-Key": "nightly-audit"}
    first = client.post("/v1/audit/verify", json=checkpoint, headers=headers)
    assert first.json()["ok"] is True
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM events WHERE id >= :id"), {"id": checkpoint["event_id"]}
        )
    again = client.post("/v1/audit/verify", json=checkpoint, headers=headers)
    assert "idempotent-replayed" not in again.headers
    assert again.json()["reason"] == "checkpoint_missing"
