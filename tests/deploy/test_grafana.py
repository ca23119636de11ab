"""The Grafana dashboard is valid and charts only what the service really serves: the
portfolio and request series of /metrics, and each system's series of /metrics/systems from
their own scrape job."""

import json
import re
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import project_path
from tests.factories import make_system

DASHBOARD = project_path("deploy", "grafana", "readiness.json")
# How the dashboard selects the series of the job that scrapes /metrics/systems.
SYSTEMS_JOB = 'job="$systems_job"'
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
        'readiness_score{job="$systems_job",system="$system"}',
        'readiness_gate_ready{job="$systems_job",system="$system"}',
    ):
        assert metric in exprs


def charted(expr: str) -> set[str]:
    return set(re.findall(r"\b(readiness_[a-z_]+)\b", expr))


def served(text: str) -> set[str]:
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def is_served(name: str, names: set[str]) -> bool:
    return name in names or any(name + suffix in names for suffix in HISTOGRAM_SUFFIXES)


def test_every_charted_metric_is_served_by_its_scrape(
    client: TestClient, admin: dict[str, str]
) -> None:
    make_system(client, admin, key="drafty", tier="minimal")  # per-system and blocking series
    client.get("/v1/controls", headers=admin)  # request series
    portfolio = served(client.get("/metrics").text)
    systems = served(client.get("/metrics/systems", headers=admin).text)
    assert portfolio
    assert systems
    board = dashboard()
    queries = expressions() + [
        variable["definition"]
        for variable in board["templating"]["list"]
        if variable["type"] == "query"
    ]
    for expr in queries:
        for name in charted(expr):
            if SYSTEMS_JOB in expr:
                assert is_served(name, systems), f"{name} is not served by /metrics/systems"
            else:
                # A per-system series read from any job but /metrics/systems' finds nothing.
                assert is_served(name, portfolio), f"{name} is not served by /metrics: {expr}"


def test_portfolio_gauges_count_each_system_once_however_many_pods() -> None:
    # Every pod serves the same portfolio gauges (they are read from the database) and
    # Prometheus scrapes /metrics on each pod: summed, each system would count once per pod.
    for expr in expressions():
        gauges = {name for name in charted(expr) if not name.startswith("readiness_http_")}
        if gauges and SYSTEMS_JOB not in expr:
            assert "sum" not in expr, expr
            assert re.search(r"\bmax\b", expr), expr
