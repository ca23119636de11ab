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
def app_settings(httpserver: HTTPServer) -> dict[str, Any]:
    return {
        "readiness_mlflow_webhook_secret": SECRET,
        "readiness_mlflow_tracking_uri": httpserver.url_for("/"),
        # Long: only the round at start-up runs within the test.
        "readiness_mlflow_reconcile_seconds": 3600,
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
