"""Which key signs checkpoints: the configured seed, or one kept in the database that every
process of the service shares."""

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import AUDIT_SEED


def public_key(client: TestClient, viewer: dict[str, str]) -> dict[str, Any]:
    response = client.get("/v1/audit/public-key", headers=viewer)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_configured_seed_signs(client: TestClient, viewer: dict[str, str]) -> None:
    expected = Ed25519PrivateKey.from_private_bytes(AUDIT_SEED).public_key()
    raw = expected.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert public_key(client, viewer) == {
        "key_id": hashlib.sha256(raw).hexdigest()[:16],
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(raw).decode(),
    }
    checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
    expected.verify(
        base64.b64decode(checkpoint["signature"]),
        f"{checkpoint['event_id']}:{checkpoint['hash']}:{checkpoint['signed_at']}".encode(),
    )


class TestWithoutAConfiguredKey:
    @pytest.fixture
    def app_settings(self) -> dict[str, Any]:
        return {"readiness_audit_signing_key": None}

    def test_every_process_signs_with_the_one_kept_in_the_database(
        self, app: FastAPI, client: TestClient, viewer: dict[str, str]
    ) -> None:
        first = public_key(client, viewer)
        assert base64.b64decode(first["public_key"]) != Ed25519PrivateKey.from_private_bytes(
            AUDIT_SEED
        ).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # Another process of the service on the same database, started later.
        other = create_app(app.state.settings, clock=app.state.clock)
        with TestClient(other) as other_client:
            assert public_key(other_client, viewer) == first
            checkpoint = other_client.get("/v1/audit/checkpoint", headers=viewer).json()
        other.state.database.dispose()
        assert checkpoint["key_id"] == first["key_id"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64",
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
    ],
)
def test_a_bad_signing_key_setting_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValueError, match="readiness_audit_signing_key"):
        Settings(readiness_audit_signing_key=value)  # type: ignore[arg-type]
