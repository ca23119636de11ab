import pytest
from fastapi.testclient import TestClient

from tests.conftest import auth

Headers = dict[str, str]


@pytest.fixture
def approvers(client: TestClient, admin: Headers) -> list[Headers]:
    """Two platform-wide approver keys, for gates that need two distinct approvals."""
    made = []
    for name in ("risk-office", "service-owner"):
        body = {"name": name, "role": "approver"}
        secret = client.post("/v1/api-keys", json=body, headers=admin).json()["key"]
        made.append(auth(secret))
    return made
