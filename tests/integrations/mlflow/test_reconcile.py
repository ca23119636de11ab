"""Aliases set while the service heard nothing of them are found by a reconciliation round and
gated as a delivery would gate them; a round after that does nothing. MLflow's REST API is
played by a real HTTP server on loopback (pytest-httpserver) that keeps its aliases and tags
as MLflow does, and the rounds are driven here, on the test's clock."""

import asyncio
import json
import threading
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from app.integrations.mlflow import reconcile
from app.integrations.mlflow.schemas import AliasCreated
from tests.conftest import FakeClock
from tests.factories import make_system, meet_every_control
from tests.integrations.mlflow.conftest import MODEL, REF, SECRET, Send, alias_data

Headers = dict[str, str]
API = "/api/2.0/mlflow"


class FakeMlflow:
    """The registry's aliases and version tags behind the REST calls the service makes."""

    def __init__(self, httpserver: HTTPServer) -> None:
        self.models: set[str] = set()
        self.aliases: dict[tuple[str, str], str] = {}
        self.tags: dict[tuple[str, str], dict[str, str]] = {}
        self.asked: list[str] = []
        serve = httpserver.expect_request
        serve(f"{API}/registered-models/get", method="GET").respond_with_handler(self._model)
        serve(f"{API}/registered-models/alias", method="GET").respond_with_handler(self._alias)
        serve(f"{API}/registered-models/alias", method="DELETE").respond_with_handler(
            self._delete_alias
        )
        serve(f"{API}/model-versions/set-tag", method="POST").respond_with_handler(self._tag)
        serve(f"{API}/model-versions/delete-tag", method="DELETE").respond_with_handler(self._untag)

    def set_alias(self, alias: str, version: str, model: str = MODEL) -> None:
        self.models.add(model)
        self.aliases[(model, alias)] = version

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    def _model(self, request: Request) -> Response:
        name = request.args["name"]
        self.asked.append(name)
        if name not in self.models:
            return self._json({"error_code": "RESOURCE_DOES_NOT_EXIST"}, 404)
        listed = [
            {"alias": alias, "version": version}
            for (model, alias), version in self.aliases.items()
            if model == name
        ]
        return self._json({"registered_model": {"name": name, "aliases": listed}})

    def _alias(self, request: Request) -> Response:
        version = self.aliases.get((request.args["name"], request.args["alias"]))
        if version is None:
            return self._json({"error_code": "INVALID_PARAMETER_VALUE"}, 400)
        return self._json({"model_version": {"name": request.args["name"], "version": version}})

    def _delete_alias(self, request: Request) -> Response:
        body = json.loads(request.data)
        self.aliases.pop((body["name"], body["alias"]), None)
        return self._json({})

    def _tag(self, request: Request) -> Response:
        body = json.loads(request.data)
        self.tags.setdefault((body["name"], body["version"]), {})[body["key"]] = body["value"]
        return self._json({})

    def _untag(self, request: Request) -> Response:
        body = json.loads(request.data)
        self.tags.get((body["name"], body["version"]), {}).pop(body["key"], None)
        return self._json({})


@pytest.fixture
def app_settings(httpserver: HTTPServer) -> dict[str, Any]:
    return {
        "readiness_mlflow_webhook_secret": SECRET,
        "readiness_mlflow_tracking_uri": httpserver.url_for("/"),
    }


@pytest.fixture
def mlflow(httpserver: HTTPServer) -> FakeMlflow:
    return FakeMlflow(httpserver)


def round_(app: FastAPI, clock: FakeClock) -> list[reconcile.Gated]:
    """One reconciliation round, as the background thread runs it."""
    return asyncio.run(
        reconcile.reconcile_once(app.state.database, settings=app.state.settings, clock=clock)
    )


def events(client: TestClient, headers: Headers, kind: str) -> list[dict[str, Any]]:
    response = client.get("/v1/events", params={"type": kind, "limit": 200}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_denied_alias_set_unseen_is_removed_and_tagged_and_a_second_round_does_nothing(
    app: FastAPI, client: TestClient, admin: Headers, clock: FakeClock, mlflow: FakeMlflow
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    mlflow.set_alias("champion", "7")

    (gated,) = round_(app, clock)
    assert gated.received.outcome == "denied"
    assert gated.mlflow is not None
    assert gated.mlflow.alias_removed
    assert (MODEL, "champion") not in mlflow.aliases
    (check,) = events(client, admin, "gate.checked")
    assert check["data"]["release"] == {"version": "7", "uri": f"models:/{MODEL}/7"}
    assert check["actor"]["name"] == "mlflow"
    tags = mlflow.tags[(MODEL, "7")]
    assert tags["readiness.gate"] == "denied"
    assert tags["readiness.gate_check_id"] == str(gated.received.systems[0].gate_check_id)
    assert tags["readiness.blocking"].startswith("score_below_threshold,control_missing:")
    (denied,) = events(client, admin, "integration.mlflow.alias_denied")
    assert denied["data"]["delivery_id"].startswith("reconcile:")
    assert denied["data"]["alias"] == "champion"
    assert client.get("/v1/systems/drafty", headers=admin).json()["stage"] == "proposed"

    assert round_(app, clock) == []
    assert len(events(client, admin, "gate.checked")) == 1


def test_an_allowed_alias_set_unseen_moves_the_system_and_a_second_round_does_nothing(
    app: FastAPI, client: TestClient, admin: Headers, clock: FakeClock, mlflow: FakeMlflow
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    meet_every_control(client, admin, key="drafty")
    mlflow.set_alias("champion", "3")

    (gated,) = round_(app, clock)
    assert gated.received.outcome == "allowed"
    (moved,) = events(client, admin, "transition.recorded")
    assert (moved["data"]["from_stage"], moved["data"]["to_stage"]) == ("proposed", "production")
    assert moved["data"]["release"] == {"version": "3", "uri": f"models:/{MODEL}/3"}
    assert mlflow.aliases[(MODEL, "champion")] == "3"
    assert mlflow.tags[(MODEL, "3")]["readiness.gate"] == "allowed"

    clock.advance(hours=30)  # past the day delivery ids are kept
    assert round_(app, clock) == []
    assert len(events(client, admin, "gate.checked")) == 1


def test_an_alias_moved_unseen_to_another_version_is_gated(
    app: FastAPI, client: TestClient, admin: Headers, clock: FakeClock, mlflow: FakeMlflow
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    meet_every_control(client, admin, key="drafty")
    mlflow.set_alias("champion", "3")
    assert [one.received.outcome for one in round_(app, clock)] == ["allowed"]

    mlflow.set_alias("champion", "4")
    clock.advance(minutes=5)
    (gated,) = round_(app, clock)
    assert gated.alias.version == "4"
    assert gated.received.outcome == "allowed"  # a new champion of a system in production
    assert round_(app, clock) == []


def test_an_alias_set_again_after_its_denial_is_gated_again(
    app: FastAPI, client: TestClient, admin: Headers, clock: FakeClock, mlflow: FakeMlflow
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    mlflow.set_alias("champion", "7")
    assert [one.received.outcome for one in round_(app, clock)] == ["denied"]

    # The evidence comes, and the same version is given the alias again while unseen.
    meet_every_control(client, admin, key="drafty")
    mlflow.set_alias("champion", "7")
    clock.advance(minutes=5)
    (gated,) = round_(app, clock)
    assert gated.received.outcome == "allowed"
    assert mlflow.aliases[(MODEL, "champion")] == "7"
    assert "readiness.blocking" not in mlflow.tags[(MODEL, "7")]
    assert client.get("/v1/systems/drafty", headers=admin).json()["stage"] == "production"


def test_an_alias_a_delivery_decided_is_not_gated_again(
    app: FastAPI,
    client: TestClient,
    admin: Headers,
    clock: FakeClock,
    mlflow: FakeMlflow,
    send: Send,
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    meet_every_control(client, admin, key="drafty")
    mlflow.set_alias("champion", "3")
    assert send(data=alias_data("champion", "3")).json()["outcome"] == "allowed"

    assert round_(app, clock) == []
    assert len(events(client, admin, "gate.checked")) == 1


def test_unmapped_aliases_and_unlinked_models_are_left_alone(
    app: FastAPI, client: TestClient, admin: Headers, clock: FakeClock, mlflow: FakeMlflow
) -> None:
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    make_system(client, admin, key="gone", tier="minimal", external_ref="mlflow:models/deleted")
    make_system(client, admin, key="elsewhere", tier="minimal", external_ref="git:repo/x")
    mlflow.set_alias("nightly", "7")
    mlflow.set_alias("champion", "2", model="unlinked-model")

    assert round_(app, clock) == []
    assert sorted(mlflow.asked) == sorted(["deleted", MODEL])
    assert events(client, admin, "gate.checked") == []


def test_two_workers_gating_one_alias_gate_it_once(
    app: FastAPI, client: TestClient, admin: Headers, clock: FakeClock
) -> None:
    """Both read the alias from MLflow before either decided; the second to lock the system
    finds the first's decision and does nothing."""
    make_system(client, admin, key="drafty", tier="minimal", external_ref=REF)
    alias = AliasCreated(name=MODEL, alias="champion", version="7")
    stages = app.state.settings.mlflow_alias_stages()
    barrier = threading.Barrier(2)
    results: list[object] = []

    def worker() -> None:
        barrier.wait()
        results.append(
            reconcile.gate(app.state.database, alias, stages=stages, read_at=clock(), now=clock())
        )

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(result is None for result in results) == [False, True]
    assert len(events(client, admin, "gate.checked")) == 1
    assert len(events(client, admin, "integration.mlflow.alias_denied")) == 1
