"""Request metrics: counted by route template, method and status, with a latency histogram,
parsed as Prometheus parses them, and summed across worker processes."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import project_path

READINESS_ROUTE = "/v1/systems/{key}/readiness"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by name and labels; fails on text Prometheus rejects."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_counted(
    scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], **labels: str
) -> float:
    return scrape.get(("readiness_http_requests_total", frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_template_method_and_status(
    client: TestClient, viewer: dict[str, str]
) -> None:
    # The registry lives as long as the process, so the test compares two scrapes.
    before = samples(client.get("/metrics").text)
    for key in ("one", "two", "three"):  # three keys, one route template
        assert client.get(f"/v1/systems/{key}/readiness", headers=viewer).status_code == 404
    assert client.get("/v1/controls", headers=viewer).status_code == 200
    assert client.get("/v1/no-such-route").status_code == 404
    after = samples(client.get("/metrics").text)

    def delta(**labels: str) -> float:
        return requests_counted(after, **labels) - requests_counted(before, **labels)

    assert delta(route=READINESS_ROUTE, method="GET", status="404") == 3
    assert delta(route="/v1/controls", method="GET", status="200") == 1
    assert delta(route="unmatched", method="GET", status="404") == 1
    # No series per system key: the path itself never becomes a label.
    assert not any("one" in dict(labels).get("route", "") for _, labels in after)

    histogram = frozenset({("route", READINESS_ROUTE), ("method", "GET")})
    count = after[("readiness_http_request_duration_seconds_count", histogram)]
    assert count - before.get(("readiness_http_request_duration_seconds_count", histogram), 0) == 3
    everything = after[
        ("readiness_http_request_duration_seconds_bucket", histogram | {("le", "+Inf")})
    ]
    assert everything == count


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


@pytest.mark.slow
def test_two_worker_processes_report_one_sum(tmp_path: Path) -> None:
    # Metrics only: a SQLite file of its own serves, whichever back-end the suite runs on.
    database_url = f"sqlite:///{tmp_path / 'workers.db'}"
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_LEVEL": "warning",
    }
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=project_path(), env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2", "--log-level", "warning"],
        cwd=project_path(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"{base}/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the workers did not start"
                time.sleep(0.2)
        # Both workers must have answered something before the count means anything.
        sent = 1
        while len(list(metrics_dir.glob("counter_*.db"))) < 2:
            _get(f"{base}/healthz")
            sent += 1
            assert sent < 2000, "the second worker never answered"
        for _ in range(40):
            _get(f"{base}/healthz")
        sent += 40

        for _ in range(4):  # each scrape may land on either worker; each sees the sum
            scrape = samples(_get(f"{base}/metrics"))
            assert requests_counted(scrape, route="/healthz", method="GET", status="200") == sent
    finally:
        server.terminate()
        server.wait(timeout=30)
