"""The event log proves itself: every event is hash-chained to the one before, the chain is
verified on request, and signed checkpoints catch rows removed or rewritten later."""

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from app.audit import chain
from app.models import Event
from tests.conftest import FakeClock, project_path
from tests.factories import make_system, record_evidence

GENESIS = "0" * 64


def feed(client: TestClient, viewer: dict[str, str]) -> list[dict[str, Any]]:
    return client.get("/v1/events", params={"limit": 200}, headers=viewer).json()["items"]


def recomputed(event: dict[str, Any], prev_hash: str) -> str:
    """What docs/audit.md tells an auditor to compute from the feed."""
    fields = ("id", "type", "system_key", "actor", "occurred_at", "data")
    canonical = json.dumps(
        {name: event[name] for name in fields},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def some_history(client: TestClient, pipeline: dict[str, str]) -> None:
    make_system(client, pipeline, key="chain-a", name="Åsa's triage ✓")
    make_system(client, pipeline, key="chain-b")
    for control in ("training", "data_rules", "monitoring"):
        record_evidence(client, pipeline, key="chain-a", control=control)
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
