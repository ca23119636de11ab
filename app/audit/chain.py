"""The event log's hash chain: each event's `hash` covers the one before it, so a row
changed or removed with SQL breaks every link after it (docs/audit.md says how an auditor
recomputes it from the feed)."""

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import rfc8785

# The `prev_hash` of the first event.
GENESIS = "0" * 64


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, as the API writes times: `Z`, microseconds only when there are any."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def canonical(event: Mapping[str, Any]) -> bytes:
    """The JSON an event's hash covers, from an `events` row's columns: the event's fields
    as the feed (GET /v1/events) gives them, in the JSON Canonicalization Scheme (RFC 8785:
    keys sorted, no spaces, numbers as JavaScript writes them, UTF-8), which libraries of
    every language produce alike."""
    document = {
        "id": event["id"],
        "type": event["type"],
        "system_key": event["system_key"],
        "actor": {
            "kind": event["actor_kind"] or "api_key",
            "id": event["actor_id"],
            "name": event["actor_name"],
            "issuer": event["actor_issuer"],
            "subject": event["actor_subject"],
        },
        "occurred_at": timestamp(event["occurred_at"]),
        "data": event["data"],
    }
    return rfc8785.dumps(document)


def link(prev_hash: str, event: Mapping[str, Any]) -> str:
    """The event's hash: hex SHA-256 of the previous event's hash (its 64 hex digits, as
    ASCII) followed by its canonical JSON."""
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()
