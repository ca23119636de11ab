"""Deliveries across real server processes: they survive a killed process, and several
processes on one database send each event once."""

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN_SECRET, auth
from tests.factories import system_body
from tests.serving import Server, make_run_server
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.slow

ADMIN = auth(ADMIN_SECRET)


def _env(database_url: str, **settings: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "READINESS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        "READINESS_WEBHOOK_ALLOW_PRIVATE": "true",
        "READINESS_WEBHOOK_POLL_SECONDS": "0.1",
        "READINESS_REEVALUATE_ON_START": "false",
        "READINESS_MIRROR_WARMUP": "false",
        "LOG_LEVEL": "warning",
        **settings,
    }


@contextmanager
def _server(database_url: str, scratch: Path, **settings: str) -> Iterator[Server]:
    with make_run_server(_env(database_url, **settings), scratch) as server:
        yield server


def _kill(server: Server) -> None:
    os.kill(server.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def _subscribe(base: str, url: str) -> None:
    response = httpx.post(f"{base}/v1/webhooks", json={"url": url}, headers=ADMIN)
    assert response.status_code == 201, response.text


def _register(base: str, key: str) -> None:
    response = httpx.post(f"{base}/v1/systems", json=system_body(key=key), headers=ADMIN)
    assert response.status_code == 201, response.text


def _event_ids(base: str) -> list[str]:
    """The events the tests subscribe after: registrations."""
    response = httpx.get(f"{base}/v1/events?type=system.created&limit=200", headers=ADMIN)
    items = response.json()["items"]
    return [str(item["id"]) for item in items]


def test_pending_deliveries_are_sent_after_a_kill(
    client: TestClient, database_url: str, tmp_path: Path, hook: Receiver
) -> None:
    # The first process takes the events and dies before sending any.
    with _server(database_url, tmp_path, READINESS_WEBHOOK_DISPATCH="false") as first:
        _subscribe(first.base, hook.url)
        for n in range(5):
            _register(first.base, f"system-{n}")
        expected = _event_ids(first.base)
        _kill(first)
    assert hook.requests == []
    with _server(database_url, tmp_path) as second:
        hook.wait_for(len(expected))
        # Five systems: sent side by side, in no particular order between them.
        assert sorted(r.json()["id"] for r in hook.requests) == sorted(expected)
        assert _event_ids(second.base) == expected


def test_a_delivery_claimed_by_a_killed_process_is_sent_by_the_next(
    client: TestClient, database_url: str, tmp_path: Path, hook: Receiver
) -> None:
    # The receiver holds the first request until the process sending it has been killed.
    hook.delay = lambda count: 5.0 if count == 0 else 0.0
    lease = {"READINESS_WEBHOOK_LEASE_SECONDS": "3", "READINESS_WEBHOOK_TIMEOUT_SECONDS": "2"}
    with _server(database_url, tmp_path, READINESS_WEBHOOK_DISPATCH="false") as setup:
        _subscribe(setup.base, hook.url)
        _register(setup.base, "claims-triage")
        expected = _event_ids(setup.base)
    with _server(database_url, tmp_path, **lease) as first:
        hook.wait_for(1)
        _kill(first)
    with _server(database_url, tmp_path, **lease):
        received = hook.wait_for(2)
    assert [r.json()["id"] for r in received] == expected * 2
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]


def test_two_processes_send_each_event_once_in_order_per_system(
    client: TestClient, database_url: str, tmp_path: Path, hook: Receiver
) -> None:
    systems = [f"system-{n}" for n in range(6)]
    with _server(database_url, tmp_path) as one, _server(database_url, tmp_path) as two:
        _subscribe(one.base, hook.url)
        for n, key in enumerate(systems):
            _register((one, two)[n % 2].base, key)
        # Several events per system, written through both processes while both send.
        for turn in range(4):
            for n, key in enumerate(systems):
                response = httpx.put(
                    f"{(one, two)[(n + turn) % 2].base}/v1/systems/{key}/evidence/data_rules",
                    json={"status": "met", "summary": f"Review {turn}"},
                    headers=ADMIN,
                )
                assert response.status_code == 200, response.text
        feed = httpx.get(f"{one.base}/v1/events?limit=200", headers=ADMIN).json()["items"]
        expected = [item for item in feed if item["system_key"] in systems]
        assert len(expected) == 30
        received = hook.wait_for(len(expected))
        # Time for any duplicate to arrive.
        time.sleep(1)
        ids = [r.json()["id"] for r in hook.requests]
        assert Counter(ids) == Counter(str(item["id"]) for item in expected)
        assert len({r.headers["webhook-id"] for r in received}) == len(expected)
        for key in systems:
            sent = [r.json()["id"] for r in hook.requests if r.json()["subject"] == key]
            assert sent == [str(item["id"]) for item in expected if item["system_key"] == key]
