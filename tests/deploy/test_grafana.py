"""The Grafana dashboard is valid and charts only what /metrics really serves."""

import json
import re
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import project_path
from tests.factories import make_system

DASHBOARD = project_path("deploy", "grafana", "readiness.json")
# Series of a histogram are named after it with these suffixes in PromQL.
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    assert board["schemaVersion"] >= 36
    panels = board["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    variables = {variable["name"] for variable in board["templating"]["list"]}
    for panel in panels:
        assert panel["title"], panel
        assert panel["type"], panel
        assert panel["targets"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        assert grid["h"] > 0
        used = set(re.findall(r"\$(\w+)", json.dumps(panel))) - {"__name__"}
        assert used <= variables, f"{panel['title']} uses undefined {used - variables}"
    cells = [
        (x, y)
        for panel in panels
        for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
        for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)), "panels overlap"


def test_dashboard_shows_portfolio_drift_gaps_and_a_chosen_systems_score() -> None:
    exprs = " ".join(expressions())
    for metric in (
        "readiness_systems",
        "readiness_drifted_systems",
        "readiness_blocking_control_systems",
        'readiness_score{system="$system"}',
    ):
        assert metric in exprs


def test_every_charted_metric_is_served(client: TestClient, admin: dict[str, str]) -> None:
    make_system(client, admin, key="drafty", tier="minimal")  # per-system and blocking series
    client.get("/v1/controls", headers=admin)  # request series
    served = {
        sample.name
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }
    charted = {
        name for expr in expressions() for name in re.findall(r"\b(readiness_[a-z_]+)\b", expr)
    }
    assert charted
    for name in charted:
        assert name in served or any(name + suffix in served for suffix in HISTOGRAM_SUFFIXES), (
            f"{name} is charted but /metrics does not serve it"
        )
