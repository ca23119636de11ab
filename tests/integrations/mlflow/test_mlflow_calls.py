"""What the service tells MLflow after a decision, with READINESS_MLFLOW_TRACKING_URI set: here a
real HTTP server on loopback (pytest-httpserver) that answers as MLflow's REST API does."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from tests.factories import make_system, meet_every_control
from tests.integrations.mlflow.conftest import MODEL, REF, SECRET, Send, alias_data
from tests.serving import free_port

Headers = dict[str, str]
ALIAS = "/api/2.0/mlflow/registered-models/alias"
SET_TAG = "/api/2.0/mlflow/model-versions/set-tag"
DELETE_TAG = "/api/2.0/mlflow/model-versions/delete-tag"
TOKEN = "mlflow-token-for-tests"


@pytest.fixture
def app_settings(httpserver: HTTPServer) -> dict[str, Any]:
    return {
        "readiness_mlflow_webhook_secret": SECRET,
        "readiness_mlflow_tracking_uri": httpserver.url_for("/"),
        "readiness_mlflow_tracking_token": TOKEN,
    }


def calls(httpserver: HTTPServer) -> list[tuple[str, str, Any]]:
    """What reached the server: method, path, and the JSON body or the query."""
    made = []
    for request, _response in httpserver.log:
        sent = json.loads(request.data) if request.data else dict(request.args)
        made.append((request.method, request.path, sent))
    return made


def aliased(httpserver: HTTPServer, version: str) -> None:
    httpserver.expect_request(ALIAS, method="GET").respond_with_json(
        {"model_version": {"name": MODEL, "version": version, "aliases": ["champion"]}}
    )


def answers_ok(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ALIAS, method="DELETE").respond_with_json({})
    httpserver.expect_request(SET_TAG, method="POST").respond_with_json({})
    httpserver.expect_request(DELETE_TAG, method="DELETE").respond_with_json({})


def tag(verdict: str, version: str, key: str = "readiness.gate") -> tuple[str, str, Any]:
    return ("POST", SET_TAG, {"name": MODEL, "version": version, "key": key, "value": verdict})


def test_a_denied_alias_is_removed_and_the_version_tagged(
    client: TestClient, admin: Headers, send: Send, httpserver: HTTPServer
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    aliased(httpserver, "7")
    answers_ok(httpserver)
    answer = send(data=alias_data("champion", "7")).json()
    assert answer["outcome"] == "denied"
    assert answer["mlflow"] == {"alias_removed": True, "tag": "denied", "errors": []}
    (decision,) = answer["systems"]
    # A minimal-tier system without evidence, as its gate check lists what blocks it: a
    # code alone when it is about no control.
    blocking = (
        "score_below_threshold,control_missing:data_rules,control_missing:access_boundaries,"
        "control_missing:support_plan,classification_unconfirmed"
    )
    assert [item["code"] for item in decision["blocking"]][:2] == [
        "score_below_threshold",
        "control_missing",
    ]
    assert calls(httpserver) == [
        ("GET", ALIAS, {"name": MODEL, "alias": "champion"}),
        ("DELETE", ALIAS, {"name": MODEL, "alias": "champion"}),
        tag("denied", "7"),
        tag(str(decision["gate_check_id"]), "7", key="readiness.gate_check_id"),
        tag(blocking, "7", key="readiness.blocking"),
    ]
    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_an_allowed_version_is_tagged_allowed_and_keeps_its_alias(
    client: TestClient, admin: Headers, send: Send, httpserver: HTTPServer
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    meet_every_control(client, admin, key="drafty")
    answers_ok(httpserver)
    answer = send(data=alias_data("champion", "3")).json()
    assert answer["outcome"] == "allowed"
    assert answer["mlflow"] == {"alias_removed": False, "tag": "allowed", "errors": []}
    (decision,) = answer["systems"]
    assert calls(httpserver) == [
        tag("allowed", "3"),
        tag(str(decision["gate_check_id"]), "3", key="readiness.gate_check_id"),
        # What blocked an earlier denial of this version no longer holds.
        ("DELETE", DELETE_TAG, {"name": MODEL, "version": "3", "key": "readiness.blocking"}),
    ]


# What MLflow answers for an alias that is not set, and for a model that is gone.
GONE = {
    400: {"error_code": "INVALID_PARAMETER_VALUE", "message": "alias champion not found."},
    404: {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "model not found"},
}


@pytest.mark.parametrize("now_on", ["8", 400, 404])
def test_an_alias_that_moved_on_or_is_gone_is_left_alone(
    client: TestClient, admin: Headers, send: Send, httpserver: HTTPServer, now_on: str | int
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    if isinstance(now_on, int):
        httpserver.expect_request(ALIAS, method="GET").respond_with_json(
            GONE[now_on], status=now_on
        )
    else:
        aliased(httpserver, now_on)  # set on another version since
    answers_ok(httpserver)
    answer = send(data=alias_data("champion", "7")).json()
    assert answer["mlflow"] == {"alias_removed": False, "tag": "denied", "errors": []}
    assert [method for method, *_ in calls(httpserver)] == ["GET", "POST", "POST", "POST"]


def test_an_mlflow_error_is_reported_and_the_decision_stands(
    client: TestClient, admin: Headers, send: Send, httpserver: HTTPServer
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    aliased(httpserver, "7")
    httpserver.expect_request(ALIAS, method="DELETE").respond_with_json(
        {"error_code": "PERMISSION_DENIED"}, status=403
    )
    httpserver.expect_request(SET_TAG, method="POST").respond_with_json({})
    response = send(data=alias_data("champion", "7"))
    assert response.status_code == 200, response.text
    actions = response.json()["mlflow"]
    assert (actions["alias_removed"], actions["tag"]) == (False, "denied")
    (error,) = actions["errors"]
    assert error.startswith(f"DELETE {ALIAS}: HTTP 403")


# Nothing listens there: connections are refused at once.
UNREACHABLE = {
    "readiness_mlflow_webhook_secret": SECRET,
    "readiness_mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}",
}


@pytest.mark.parametrize("app_settings", [UNREACHABLE], ids=["unreachable"])
def test_an_unreachable_mlflow_does_not_fail_the_answer(
    client: TestClient,
    admin: Headers,
    send: Send,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    response = send(data=alias_data("champion", "7"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["outcome"] == "denied"
    assert answer["mlflow"]["alias_removed"] is False
    assert answer["mlflow"]["tag"] is None
    assert [error.split(":")[0] for error in answer["mlflow"]["errors"]] == [
        f"GET {ALIAS}",
        *[f"POST {SET_TAG}"] * 3,
    ]
    assert "MLflow call failed" in caplog.text
    # The denial was recorded before MLflow was called.
    denied = client.get(
        "/v1/events", params={"type": "integration.mlflow.alias_denied"}, headers=admin
    ).json()["items"]
    assert len(denied) == 1


def test_a_version_denied_by_the_lifecycle_says_so_in_its_blocking_tag(
    client: TestClient, admin: Headers, send: Send, httpserver: HTTPServer
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    meet_every_control(client, admin, key="drafty")
    retire = {"to_stage": "retired", "reason": "replaced"}
    retired = client.post("/v1/systems/drafty/transitions", json=retire, headers=admin)
    assert retired.status_code == 201, retired.text
    aliased(httpserver, "7")
    answers_ok(httpserver)
    answer = send(data=alias_data("champion", "7")).json()
    assert answer["outcome"] == "denied"
    assert tag("invalid_transition:retired", "7", key="readiness.blocking") in calls(httpserver)
