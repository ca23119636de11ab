"""The reconciliation runs in the app's background, from start-up: an alias set while the
service was stopped is gated as soon as it starts again."""

import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from tests.conftest import ADMIN_SECRET, auth
from tests.factories import make_system
from tests.integrations.mlflow.conftest import MODEL, REF, SECRET
from tests.integrations.mlflow.test_reconcile import FakeMlflow


@pytest.fixture
def reconcile_seconds() -> float:
    return 3600  # long: only the round at start-up runs within a test


@pytest.fixture
def app_settings(httpserver: HTTPServer, reconcile_seconds: float) -> dict[str, Any]:
    return {
        "readiness_mlflow_webhook_secret": SECRET,
        "readiness_mlflow_tracking_uri": httpserver.url_for("/"),
        "readiness_mlflow_reconcile_seconds": reconcile_seconds,
    }


def test_an_alias_set_while_stopped_is_gated_at_start_up(
    app: FastAPI, httpserver: HTTPServer
) -> None:
    mlflow = FakeMlflow(httpserver)
    with TestClient(app) as client:
        make_system(client, auth(ADMIN_SECRET), key="drafty", tier="minimal", external_ref=REF)
    # Stopped: the alias is set, and no delivery reaches the service.
    mlflow.set_alias("champion", "7")

    with TestClient(app):
        deadline = time.monotonic() + 10
        while (MODEL, "champion") in mlflow.aliases and time.monotonic() < deadline:
            time.sleep(0.05)
    assert (MODEL, "champion") not in mlflow.aliases
    assert mlflow.tags[(MODEL, "7")]["readiness.gate"] == "denied"


@pytest.mark.parametrize("reconcile_seconds", [0])
def test_an_interval_of_zero_never_reconciles(app: FastAPI, httpserver: HTTPServer) -> None:
    """READINESS_MLFLOW_RECONCILE_SECONDS=0 with a tracking server set: MLflow is never
    asked, and an alias set unseen stays."""
    mlflow = FakeMlflow(httpserver)
    mlflow.set_alias("champion", "7")
    with TestClient(app) as client:
        make_system(client, auth(ADMIN_SECRET), key="drafty", tier="minimal", external_ref=REF)
    with TestClient(app):
        time.sleep(0.5)
    assert mlflow.asked == []
    assert (MODEL, "champion") in mlflow.aliases
