"""Request bodies take the JSON types the document states (found by schemathesis): a boolean
is `true`/`false`, not `0` or `"true"`; an integer is `3` or `3.0`, not `"3"` or `true`; a
number is not a string. Lax coercion would accept data the document calls invalid."""

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.policies.service import default_policy_document
from tests.factories import make_system, transition

Headers = dict[str, str]
CRITERION = {"metric": "accuracy", "op": ">=", "target": 0.9, "warning": 0.8}


def policy(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(default_policy_document()), **changes}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"activate": 0}, "activate"),
        ({"activate": "true"}, "activate"),
        ({"approval_validity_days": "30"}, "approval_validity_days"),
        ({"approval_validity_days": True}, "approval_validity_days"),
        ({"max_pilot_days": 30.5}, "max_pilot_days"),
        ({"weights": {"purpose": "2"}}, "weights.purpose"),
    ],
)
def test_policy_fields_take_their_json_types(
    client: TestClient, admin: Headers, changes: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/policies", json=policy(**changes), headers=admin)
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]


def test_whole_numbers_may_be_written_as_floats(client: TestClient, admin: Headers) -> None:
    body = policy(approval_validity_days=45.0)
    body["tiers"]["high"]["production"]["approvals"] = 2.0
    response = client.post("/v1/policies", json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["approval_validity_days"] == 45
    assert response.json()["tiers"]["high"]["production"]["approvals"] == 2


def test_pilot_fields_take_their_json_types(client: TestClient, admin: Headers) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    assert transition(client, admin, key="drafty", to="pilot").status_code == 201
    url = "/v1/systems/drafty/pilots"
    for criterion in ({**CRITERION, "key": 1}, {**CRITERION, "target": "0.9"}):
        response = client.post(url, json={"name": "x", "criteria": [criterion]}, headers=admin)
        assert response.status_code == 422, response.text
    pilot = client.post(url, json={"name": "x", "criteria": [CRITERION]}, headers=admin).json()
    results = f"/v1/pilots/{pilot['id']}/results"
    for sample_size in ("12", True, 12.5):
        body = {"metrics": {"accuracy": 0.95}, "sample_size": sample_size}
        assert client.post(results, json=body, headers=admin).status_code == 422, sample_size
    body = {"metrics": {"accuracy": 0.95}, "sample_size": 12.0}
    response = client.post(results, json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["result"]["sample_size"] == 12
