"""What `make run` writes to its output never holds a query string: clients do send keys as
`?api_key=...`, and logs travel further than the database."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from alembic import command

from tests.conftest import ADMIN_SECRET, alembic_config
from tests.serving import make_run_server

SECRET = "rdy_sent_in_a_query_string_0123456789"

pytestmark = pytest.mark.slow


def call(url: str, *, method: str = "GET", data: bytes | None = None) -> int:
    request = urllib.request.Request(
        url,
        method=method,
        data=data,
        headers={"Authorization": f"Bearer {ADMIN_SECRET}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def test_no_query_string_reaches_the_log_of_make_run(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'log.db'}"
    command.upgrade(alembic_config(database_url), "head")
    env = {
        "DATABASE_URL": database_url,
        "READINESS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        "LOG_LEVEL": "info",
    }
    with make_run_server(env, tmp_path) as server:
        statuses = [
            call(f"{server.base}/v1/systems?api_key={SECRET}"),
            call(f"{server.base}/v1/systems/no-such-sys?api_key={SECRET}&limit=5"),
            call(f"{server.base}/healthz?token={SECRET}"),
            call(f"{server.base}/nowhere?api_key={SECRET}"),
            call(f"{server.base}/v1/systems?api_key={SECRET}", method="POST", data=b"{}"),
        ]
    assert statuses == [200, 404, 200, 404, 422]
    log = server.log()
    assert SECRET not in log
    assert "api_key=" not in log
    # The log is on: each of those requests has its line, with the route template.
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [(line["method"], line["route"], line["status"]) for line in lines]
    assert requests[-5:] == [
        ("GET", "/v1/systems", 200),
        ("GET", "/v1/systems/{key}", 404),
        ("GET", "/healthz", 200),
        ("GET", "unmatched", 404),
        ("POST", "/v1/systems", 422),
    ]
