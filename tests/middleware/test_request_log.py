import json
import logging

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN_SECRET


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "app.access"]


def test_request_id_is_honoured_or_generated(client: TestClient, viewer: dict[str, str]) -> None:
    given = client.get("/v1/controls", headers={**viewer, "X-Request-ID": "deploy-42.a"})
    assert given.headers["x-request-id"] == "deploy-42.a"
    made = client.get("/v1/controls", headers=viewer).headers["x-request-id"]
    assert len(made) == 32
    odd = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert odd.headers["x-request-id"] != "bad id with spaces"


def test_one_json_line_per_request_without_secrets(
    client: TestClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    client.get("/v1/systems/ghost-sys", headers={**admin, "X-Request-ID": "r-1"})
    client.get("/v1/systems/ghost-sys/readiness", headers={**admin, "X-Request-ID": "r-2"})
    lines = {line["request_id"]: line for line in request_lines(caplog)}
    assert lines["r-1"]["route"] == "/v1/systems/{key}"
    assert lines["r-1"]["status"] == 404
    assert lines["r-1"]["method"] == "GET"
    assert lines["r-1"]["api_key_id"] == 1  # the bootstrap admin key
    assert lines["r-2"]["route"] == "/v1/systems/{key}/readiness"
    assert lines["r-2"]["api_key_id"] == 1
    assert isinstance(lines["r-1"]["duration_ms"], float)
    assert ADMIN_SECRET not in caplog.text
